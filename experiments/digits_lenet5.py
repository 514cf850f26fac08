"""LeNet-5 on scikit-learn's bundled 8x8 digits, resized to 32x32 (the default experiment).

Needs no download. Stratified 70/10/20 train/validation/test split.

  python -m cnn_jax train --config experiments/digits_lenet5.py --workdir runs/digits_lenet5
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.augment import augment_config


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "digits"
  config.dataset.image_size = 32
  config.dataset.resize = "bilinear"
  config.dataset.val_fraction = 0.125   # of the 80% left after the test split -> 10% overall
  config.dataset.test_fraction = 0.2

  # On-device augmentation inside the jitted step (see cnn_jax/data/augment.py).
  config.augment = augment_config(crop_padding=3, rotation_degrees=10.0)  # translate, rotate

  config.model = ml_collections.ConfigDict()
  config.model.name = "lenet5"
  config.model.dtype = "float32"     # "bfloat16": bf16 compute, f32 params/BN stats/loss
  config.model.act = "tanh"

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.weight_decay = 0.0

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "cosine"

  config.train = train_section(epochs=40, batch_size=32, eval_batch_size=256, log_every_steps=10)
  return config
