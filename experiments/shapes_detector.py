"""A YOLO-v1-style one-stage detector (Redmon et al. 2016; convolutional head, batch norm)
finding the circles, squares, triangles and stars of the procedural ``shapes`` scenes: up to
four per 64x64 image on noisy, striped or blotchy backgrounds, later ones occluding earlier
ones (each box holds the visible pixels). An 8x8 grid, two boxes per cell; four box classes.
Built on the fly, no download.

  python -m cnn_jax train --config experiments/shapes_detector.py --workdir runs/shapes_det
  python -m cnn_jax eval --workdir runs/shapes_det
  python -m cnn_jax predict --workdir runs/shapes_det --image my_photo.jpg --out boxes.png

Reports VOC mAP@0.5 (all-point and 11-point) and COCO mAP@[.5:.95] on the test scenes;
``val_map50`` picks the best checkpoint. ``:ci`` is CI-sized (32x32 scenes, a 4x4 grid, a
narrow network, seconds on a CPU).
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.augment import augment_config
from cnn_jax.data.presets import dataset_preset


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  ci = variant == "ci"
  config = ml_collections.ConfigDict()
  config.seed = 0
  # more scenes: 2,000 overfit (mAP 0.68), 4,000 x 8 epochs 0.80, 6,000 x 12 epochs 0.88,
  # 10,000 x 12 epochs 0.90 (benchmarks/RESULTS.md; 489 s on a shared 2-core CPU)
  config.dataset = dataset_preset("shapes", **(
      {"num_train": 320, "num_test": 64, "image_size": 32} if ci else {"num_train": 10000}))
  config.task = ml_collections.ConfigDict({
      "name": "detection", "lambda_coord": 5.0, "lambda_noobj": 0.5, "max_detections": 100,
      "nms_iou": 0.5, "score_threshold": 0.01, "class_agnostic": False, "score_bins": 1000})
  config.augment = augment_config(flip=True)  # the boxes are mirrored with the image
  config.model = ml_collections.ConfigDict({
      "name": "yolo_simple", "grid_size": 4 if ci else 8, "num_boxes": 2,
      "width": 8 if ci else 16, "head_width": 32 if ci else 128})
  config.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 3e-3,
                                                "weight_decay": 0.0})
  config.schedule = ml_collections.ConfigDict({"name": "warmup_cosine", "warmup_epochs": 1})
  config.train = train_section(epochs=3 if ci else 12, batch_size=16 if ci else 32,
                               eval_batch_size=64 if ci else 250, log_every_steps=20)
  return config
