"""FCN-8s (Long, Shelhamer & Darrell 2015) on a ResNet-18 backbone, from scratch, segmenting
the procedural ``shapes`` scenes of ``shapes_unet.py`` (64x64, five mask classes). The
stride-32 scores are upsampled by bilinear-initialised transposed convolutions and fused
with 1x1 scores of the stride-16 and stride-8 maps.

  python -m cnn_jax train --config experiments/shapes_fcn.py --workdir runs/shapes_fcn8s

The paper's comparison: the same run without skips (FCN-32s) or with one (FCN-16s),

  python -m cnn_jax train --config experiments/shapes_fcn.py --workdir runs/shapes_fcn32s \\
      --config.model.name=fcn32s_resnet18

and ``--config.model.name=fcn8s_vgg16`` for the paper's VGG-16 backbone (about 8x the
compute). ``:ci`` is CI-sized (32x32 scenes, seconds on a CPU). Measured with 2 epochs
(``--config.train.epochs=2``, ~4 s per step on a shared 2-core CPU): test mIoU 0.226 for
FCN-8s, 0.182 for FCN-32s (benchmarks/RESULTS.md); the 6 epochs here are not measured.
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.augment import augment_config
from cnn_jax.data.presets import dataset_preset


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  ci = variant == "ci"
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = dataset_preset("shapes", **(
      {"num_train": 160, "num_test": 32, "image_size": 32} if ci else {}))
  config.task = ml_collections.ConfigDict({"name": "segmentation", "loss": "cross_entropy",
                                           "dice_weight": 1.0, "class_weights": (),
                                           "ignore_label": -1})
  config.augment = augment_config(flip=True)
  config.model = ml_collections.ConfigDict({"name": "fcn8s_resnet18", "head_width": 256,
                                            "head_kernel": 1, "dropout_rate": 0.1,
                                            "upsample": "transpose"})
  config.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 1e-3,
                                                "weight_decay": 0.0})
  config.schedule = ml_collections.ConfigDict({"name": "warmup_cosine", "warmup_epochs": 1})
  config.train = train_section(epochs=2 if ci else 6, batch_size=16 if ci else 32,
                               eval_batch_size=32 if ci else 250, log_every_steps=20)
  return config
