"""LeNet-5 on MNIST (60k/10k) from an .npz file, 28x28 zero-padded to 32x32 as in the paper.

Needs mnist.npz (x_train, y_train, x_test, y_test) in the data directory:

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_lenet5.py --workdir runs/mnist_lenet5
"""

import ml_collections

from cnn_jax.config import train_section


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "npz"
  config.dataset.file = "mnist.npz"
  config.dataset.data_dir = ""           # empty: use $CNN_JAX_DATA_DIR
  config.dataset.image_size = 32
  config.dataset.resize = "pad"
  config.dataset.mean = 0.1307
  config.dataset.std = 0.3081
  config.dataset.val_fraction = 5000     # examples held out of the 60k for validation
  config.dataset.test_fraction = 0.0     # 0: use the file's own 10k test split

  config.model = ml_collections.ConfigDict()
  config.model.name = "lenet5"
  config.model.dtype = "float32"     # "bfloat16": bf16 compute, f32 params/BN stats/loss
  config.model.act = "relu"
  config.model.pool = "max"

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.weight_decay = 0.0

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "warmup_cosine"
  config.schedule.warmup_epochs = 1

  config.train = train_section(epochs=12, batch_size=128, eval_batch_size=1000, log_every_steps=50)
  return config
