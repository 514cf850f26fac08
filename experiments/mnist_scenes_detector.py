"""The YOLO-style detector of ``shapes_detector.py`` on ``mnist_scenes``: one to three MNIST
digits, randomly scaled and placed, blended onto CIFAR-10 photos (64x64); ten box classes
(the digits). Real images: a harder benchmark than the shapes. Reads mnist.npz and
cifar10_jpeg.npz from the data directory (the CIFAR JPEGs are decoded once into
``dataset.cache_dir``).

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_scenes_detector.py --workdir runs/mnist_scenes_det

Reports VOC mAP@0.5 (all-point and 11-point) and COCO mAP@[.5:.95] on the test scenes.
``:ci`` is CI-sized (32x32 scenes, a 4x4 grid, a narrow network, seconds on a CPU once
decoded).
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.augment import augment_config
from cnn_jax.data.presets import dataset_preset


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  ci = variant == "ci"
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = dataset_preset("mnist_scenes", **(
      {"num_train": 320, "num_test": 64, "image_size": 32} if ci else {}))
  config.task = ml_collections.ConfigDict({
      "name": "detection", "lambda_coord": 5.0, "lambda_noobj": 0.5, "max_detections": 100,
      "nms_iou": 0.5, "score_threshold": 0.01, "class_agnostic": False, "score_bins": 1000})
  config.augment = augment_config()  # no flips: mirrored digits are not digits
  config.model = ml_collections.ConfigDict({
      "name": "yolo_simple", "grid_size": 4 if ci else 8, "num_boxes": 2,
      "width": 8 if ci else 32, "head_width": 32 if ci else 128})
  config.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 3e-3,
                                                "weight_decay": 0.0})
  config.schedule = ml_collections.ConfigDict({"name": "warmup_cosine", "warmup_epochs": 1})
  config.train = train_section(epochs=3 if ci else 12, batch_size=16 if ci else 32,
                               eval_batch_size=64 if ci else 250, log_every_steps=20)
  return config
