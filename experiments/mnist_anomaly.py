"""Anomaly detection on MNIST by reconstruction error: a convolutional autoencoder trained
on one digit only (``task.normal_classes``); every test digit is scored by its
reconstruction error, the threshold is mean + std of the error on the normal training
digits (the course notes' rule), and the report gives ROC AUC, average precision and
precision / recall / F1 / specificity at that threshold and at the best-F1 threshold.

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_anomaly.py --workdir runs/mnist_anomaly_0
  # another normal digit:  --config.task.normal_classes=3 --workdir runs/mnist_anomaly_3

This is the one-class protocol of Ruff et al. 2018 ("Deep One-Class Classification",
Table 1), whose convolutional-autoencoder baseline sits around 0.9 AUC. All ten digits in
turn: ``benchmarks/mnist_anomaly_sweep.py`` (results in benchmarks/RESULTS.md).
``--config experiments/mnist_anomaly.py:digits`` is the CI-sized variant.
"""

import os

import ml_collections

from cnn_jax.config import load_config
from cnn_jax.data.presets import dataset_preset

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist_conv_autoencoder.py")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """``mnist_conv_autoencoder.py``'s network and optimizer, trained on the normal class."""
  digits = variant == "digits"
  config = load_config(f"{BASE}:{variant}" if variant else BASE)
  config.dataset = dataset_preset("digits" if digits else "mnist",
                                  **({} if digits else {"val_fraction": 0.1}))
  config.task = ml_collections.ConfigDict({"name": "anomaly", "loss": "mse",
                                           "noise_factor": 0.0, "normal_classes": 0,
                                           "threshold_std": 1.0})
  config.train.update({"epochs": 15 if digits else 20, "batch_size": 16 if digits else 128,
                       "log_every_steps": 10})
  return config
