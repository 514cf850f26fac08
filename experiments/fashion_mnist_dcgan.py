"""DCGAN on Fashion-MNIST (28x28 grayscale) with the settings of experiments/mnist_dcgan.py,
scored by our CNN trained on Fashion-MNIST (train it first):

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/fashion_mnist_cnn.py --workdir runs/fashion_mnist_cnn
  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/fashion_mnist_dcgan.py --workdir runs/fashion_mnist_dcgan

``--config.task.classifier_run=''`` trains without the classifier metrics.
"""

import ml_collections

from cnn_jax.data.presets import dataset_preset
from cnn_jax.tasks.gan import dcgan_config


def get_config() -> ml_collections.ConfigDict:
  return dcgan_config(dataset_preset("fashion_mnist"), classifier_run="runs/fashion_mnist_cnn",
                      epochs=5)
