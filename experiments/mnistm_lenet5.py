"""LeNet-5 on the MNIST-M-style digits (MNIST blended over CIFAR-10 patches, see
cnn_jax/data/domains.py), 28x28 RGB zero-padded to 32x32: the judge of translations into
that domain in experiments/mnist_cyclegan.py. Needs mnist.npz and cifar10_jpeg.npz:

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnistm_lenet5.py --workdir runs/mnistm_lenet5
"""

import ml_collections

from cnn_jax.config import train_section


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = ml_collections.ConfigDict({
      "name": "mnist_m", "mnist_file": "mnist.npz", "cifar_file": "cifar10_jpeg.npz",
      "data_dir": "", "seed": 0, "image_size": 32, "resize": "pad", "mean": 0.45, "std": 0.25,
      "val_fraction": 5000, "test_fraction": 0.0})
  config.model = ml_collections.ConfigDict({"name": "lenet5", "act": "relu", "pool": "max"})
  config.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 2e-3,
                                                "weight_decay": 0.0})
  config.schedule = ml_collections.ConfigDict({"name": "warmup_cosine", "warmup_epochs": 1})
  config.train = train_section(epochs=4, batch_size=128, eval_batch_size=1000,
                               log_every_steps=50)
  return config
