"""A dense autoencoder on Fashion-MNIST, as the course notes write it: Flatten ->
Dense(64, relu) -> Dense(784, sigmoid) -> reshape, trained with MSE and Adam.

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/fashion_mnist_autoencoder.py --workdir runs/fashion_mnist_autoencoder

``--config experiments/fashion_mnist_autoencoder.py:digits`` is the CI-sized variant on
scikit-learn's 8x8 digits (no download, seconds).
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.presets import dataset_preset


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  digits = variant == "digits"
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = dataset_preset("digits" if digits else "fashion_mnist")
  config.task = ml_collections.ConfigDict({"name": "autoencoder", "loss": "mse",
                                           "noise_factor": 0.0})
  config.model = ml_collections.ConfigDict({"name": "dense_autoencoder",
                                            "latent_dim": 16 if digits else 64})
  config.optimizer = ml_collections.ConfigDict({
      "name": "adam", "learning_rate": 3e-3 if digits else 1e-3, "weight_decay": 0.0})
  config.schedule = ml_collections.ConfigDict({"name": "constant"})
  config.train = train_section(epochs=10 if digits else 20, batch_size=32 if digits else 256,
                               eval_batch_size=256 if digits else 1000, log_every_steps=20)
  return config
