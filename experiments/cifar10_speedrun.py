"""A fast CIFAR-10 recipe in the spirit of airbench (Keller Jordan's cifar10-airbench, which
reports 94.01% in 2.59 s on an A100): the pieces this codebase supports cleanly.

Kept: the training split resident on the device (``train.on_device_data``), random flips
and 2-pixel reflect-padded translations, a small VGG-like net with batch norm (the simple
CNN: three blocks of two Conv-BN-ReLU layers, 64-128-256 channels, max pools, global average
pooling, one dense layer), label smoothing 0.2, SGD with Nesterov momentum and weight decay,
a large batch with a short warmup and cosine decay. Left out: the frozen patch-whitening
first layer, the lookahead/EMA of weights, airbench's scaled BN and per-layer learning rates,
test-time flip averaging (the evaluator scores one view), and a schedule tuned on a GPU
sweep (the learning rate here is a sensible default, not searched).

Needs cifar10_jpeg.npz in the data directory:

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/cifar10_speedrun.py --workdir runs/cifar10_speedrun

``:cpu`` is the size measured on a shared 2-core CPU (half the width, a 2,000-image
training subset, one epoch; benchmarks/RESULTS.md has its accuracy).
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.augment import augment_config
from cnn_jax.errors import ConfigError


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in ("", "cpu"):
    raise ConfigError(f"cifar10_speedrun.py has the variants '' and 'cpu', got {variant!r}.")
  cpu = variant == "cpu"
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "cifar10_jpeg"
  config.dataset.file = "cifar10_jpeg.npz"
  config.dataset.data_dir = ""           # empty: use $CNN_JAX_DATA_DIR
  config.dataset.image_size = 0          # native 32x32
  config.dataset.normalize = "cifar10"
  config.dataset.val_fraction = 500 if cpu else 5000
  config.dataset.test_fraction = 0.0     # the file's own 10k test split
  config.dataset.train_subset = 2000 if cpu else 0

  config.augment = augment_config(flip=True, crop_padding=2, crop_mode="reflect")

  config.model = ml_collections.ConfigDict()
  config.model.name = "simple_cnn"
  config.model.dtype = "float32"     # "bfloat16" on accelerators
  config.model.base_channels = 32 if cpu else 64
  config.model.num_blocks = 3
  config.model.convs_per_block = 2
  config.model.dense_units = ()
  config.model.dropout_rate = 0.0
  config.model.head = "gap"

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.2
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "warmup_cosine"
  config.schedule.warmup_epochs = 0.5

  config.train = train_section(epochs=1 if cpu else 10, batch_size=256 if cpu else 512,
                               eval_batch_size=1000, label_smoothing=0.2, on_device_data=True,
                               log_every_steps=10)
  return config
