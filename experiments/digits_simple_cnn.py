"""The simple CNN (Conv-BN-ReLU-MaxPool blocks, dropout) on scikit-learn's digits at 16x16.

No download needed; trains in seconds on a CPU.

  python -m cnn_jax train --config experiments/digits_simple_cnn.py --workdir runs/digits_simple_cnn
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.augment import augment_config


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "digits"
  config.dataset.image_size = 16
  config.dataset.resize = "bilinear"
  config.dataset.val_fraction = 0.125
  config.dataset.test_fraction = 0.2
  config.dataset.train_subset = 0       # >0: keep only this many training examples

  config.augment = augment_config()      # all off; e.g. --config.augment.mixup_alpha=0.4

  config.model = ml_collections.ConfigDict()
  config.model.name = "simple_cnn"
  config.model.dtype = "float32"     # "bfloat16": bf16 compute, f32 params/BN stats/loss
  config.model.base_channels = 16
  config.model.num_blocks = 2
  config.model.dense_units = (64,)
  config.model.dropout_rate = 0.5
  config.model.head = "flatten"

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.05
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "warmup_cosine"
  config.schedule.warmup_epochs = 1

  config.train = train_section(epochs=20, batch_size=32, eval_batch_size=256,
                               label_smoothing=0.1, log_every_steps=10)
  return config
