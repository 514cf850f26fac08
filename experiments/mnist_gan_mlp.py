"""The original GAN (Goodfellow et al. 2014) on MNIST, as the notes' algorithm: fully
connected generator and discriminator (dropout in the discriminator), ``k`` discriminator
updates per generator update (``task.disc_steps``, 1 as in the paper; the batch holds k
minibatches of 64), the non-saturating generator loss (``task.generator_loss="minimax"``
for the paper's original log(1 - D(G(z)))). Scored by our LeNet-5 (train it first, see
experiments/mnist_dcgan.py):

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_gan_mlp.py --workdir runs/mnist_gan_mlp

``--config experiments/mnist_gan_mlp.py:ci`` is the CI-sized variant (8x8 digits, k = 2).
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.presets import dataset_preset
from cnn_jax.tasks.gan import gan_adam

MINIBATCH = 64


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  ci = variant == "ci"
  disc_steps = 2 if ci else 1
  minibatch = 16 if ci else MINIBATCH
  config = ml_collections.ConfigDict()
  config.seed = 0
  # An MLP step is cheap (about 30 ms on a 2-core CPU): 9,000 steps in about 6 minutes.
  config.dataset = (dataset_preset("digits") if ci else
                    dataset_preset("mnist", val_fraction=2000))
  config.model = ml_collections.ConfigDict({
      "name": "mlp_generator", "latent_dim": 16 if ci else 100,
      "widths": (64, 128) if ci else (256, 512, 1024), "output": "tanh"})
  config.task = ml_collections.ConfigDict({
      "name": "gan", "disc_steps": disc_steps, "generator_loss": "non_saturating",
      "discriminator": {"name": "mlp_discriminator", "widths": (128, 64) if ci else (512, 256),
                        "dropout_rate": 0.3},
      "disc_optimizer": gan_adam(), "classifier_run": "" if ci else "runs/mnist_lenet5"})
  config.optimizer = gan_adam()
  config.schedule = ml_collections.ConfigDict({"name": "constant"})
  config.train = train_section(epochs=4 if ci else 10, batch_size=disc_steps * minibatch,
                               eval_batch_size=256 if ci else 1000, log_every_steps=50)
  return config
