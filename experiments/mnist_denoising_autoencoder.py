"""A denoising convolutional autoencoder on MNIST, as in the course notes: Gaussian noise
with factor 0.2 added to the input (on the device, inside the step) and clipped to [0, 1];
the clean image is the target. The report gives the PSNR of the reconstruction against
the clean image next to the PSNR of the noisy input itself. Everything else is
``mnist_conv_autoencoder.py`` with a latent of 64.

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_denoising_autoencoder.py --workdir runs/mnist_denoising

``--config experiments/mnist_denoising_autoencoder.py:digits`` is the CI-sized variant.
"""

import os

import ml_collections

from cnn_jax.config import load_config

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist_conv_autoencoder.py")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = load_config(f"{BASE}:{variant}" if variant else BASE)
  config.task.noise_factor = 0.2  # the notes: 0.2 and 0.25 work best
  if variant != "digits":
    config.model.latent_dim = 64
  return config
