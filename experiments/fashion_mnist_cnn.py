"""The simple CNN (Conv-BN-ReLU-MaxPool x3, dropout) on Fashion-MNIST with flip augmentation.

Needs fashion_mnist.npz in the data directory:

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/fashion_mnist_cnn.py --workdir runs/fashion_mnist_cnn
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.augment import augment_config


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "npz"
  config.dataset.file = "fashion_mnist.npz"
  config.dataset.data_dir = ""           # empty: use $CNN_JAX_DATA_DIR
  config.dataset.class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
  config.dataset.image_size = 28
  config.dataset.normalize = "fashion_mnist"
  config.dataset.val_fraction = 5000
  config.dataset.test_fraction = 0.0     # the file's own 10k test split

  config.augment = augment_config(flip=True)

  config.model = ml_collections.ConfigDict()
  config.model.name = "simple_cnn"
  config.model.dtype = "float32"     # "bfloat16": bf16 compute, f32 params/BN stats/loss
  config.model.base_channels = 32
  config.model.num_blocks = 3
  config.model.convs_per_block = 1
  config.model.dense_units = (256,)
  config.model.dropout_rate = 0.3
  config.model.head = "flatten"

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.weight_decay = 1e-4

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "warmup_cosine"
  config.schedule.warmup_epochs = 1

  config.train = train_section(epochs=15, batch_size=128, eval_batch_size=1000, log_every_steps=50)
  return config
