"""A denoising convolutional autoencoder on MNIST, as in the course notes: Gaussian noise
with factor 0.2 added to the input (on the device, inside the step) and clipped to [0, 1];
the clean image is the target. The report gives the PSNR of the reconstruction against
the clean image next to the PSNR of the noisy input itself.

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_denoising_autoencoder.py --workdir runs/mnist_denoising

``--config experiments/mnist_denoising_autoencoder.py:digits`` is the CI-sized variant.
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.presets import dataset_preset


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  digits = variant == "digits"
  config = ml_collections.ConfigDict()
  config.seed = 0
  # the 8x8 digits are upsampled to 16x16 so that two stride-2 stages leave a 4x4 map
  config.dataset = dataset_preset("digits", image_size=16) if digits else dataset_preset("mnist")
  config.task = ml_collections.ConfigDict({"name": "autoencoder", "loss": "mse",
                                           "noise_factor": 0.2})
  config.model = ml_collections.ConfigDict({"name": "conv_autoencoder",
                                            "latent_dim": 16 if digits else 64,
                                            "widths": (16, 32) if digits else (32, 64),
                                            "upsample": "pixel_shuffle"})
  config.optimizer = ml_collections.ConfigDict({
      "name": "adam", "learning_rate": 3e-3 if digits else 1e-3, "weight_decay": 0.0})
  config.schedule = ml_collections.ConfigDict({"name": "cosine"})
  config.train = train_section(epochs=10 if digits else 10, batch_size=32 if digits else 128,
                               eval_batch_size=256 if digits else 1000, log_every_steps=20)
  return config
