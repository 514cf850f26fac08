"""LeNet-5 on scikit-learn's bundled 8x8 digits, resized to 32x32 (the default experiment).

Needs no download. Stratified 70/10/20 train/validation/test split.

  python -m cnn_jax train --config experiments/digits_lenet5.py --workdir runs/digits_lenet5
"""

import ml_collections

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

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 40
  config.train.batch_size = 32
  config.train.eval_batch_size = 256
  config.train.label_smoothing = 0.0
  config.train.num_devices = 0          # 0 = all devices
  config.train.on_device_data = False   # True: keep the train split on the device, gather in jit
  config.train.checkpoint_every_steps = 0  # 0 = at the end of every epoch only
  config.train.keep_checkpoints = 2
  config.train.best_metric = "val_accuracy"
  config.train.best_mode = "max"
  config.train.log_every_steps = 10
  config.train.progress = True
  return config
