"""Binary classification (one sigmoid output, BCE): digit 3 vs digit 8 from sklearn's digits.

A stand-in for the cats-vs-dogs / gender classifiers that needs no download; the report
has the ROC and precision-recall curves and the metrics at ``task.threshold``.

  python -m cnn_jax train --config experiments/digits_binary.py --workdir runs/digits_binary
"""

import ml_collections

from cnn_jax.config import train_section


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.task = ml_collections.ConfigDict()
  config.task.name = "binary"
  config.task.threshold = 0.5

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "digits"
  config.dataset.classes = (3, 8)       # class 1 (positive) is the digit 8
  config.dataset.image_size = 16
  config.dataset.resize = "bilinear"
  config.dataset.val_fraction = 0.15
  config.dataset.test_fraction = 0.25

  config.model = ml_collections.ConfigDict()
  config.model.name = "simple_cnn"
  config.model.dtype = "float32"     # "bfloat16": bf16 compute, f32 params/BN stats/loss
  config.model.base_channels = 16
  config.model.num_blocks = 2
  config.model.dense_units = (32,)
  config.model.dropout_rate = 0.3
  config.model.head = "flatten"

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.0

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "cosine"

  config.train = train_section(epochs=10, batch_size=16, eval_batch_size=128, log_every_steps=10)
  return config
