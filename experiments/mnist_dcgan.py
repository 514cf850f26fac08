"""DCGAN (Radford et al. 2016) on MNIST: a batch-norm ReLU generator with pixel-shuffle
upsampling and a tanh output (real images scaled to [-1, 1]), a strided-convolution
discriminator with LeakyReLU 0.2, Adam 2e-4 with b1 0.5 for both players, the
non-saturating generator loss. Scored by our own LeNet-5 trained on MNIST (train it first):

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_lenet5.py --workdir runs/mnist_lenet5
  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_dcgan.py --workdir runs/mnist_dcgan
  python -m cnn_jax sample --workdir runs/mnist_dcgan --num 64 --out grid.png

``--config experiments/mnist_dcgan.py:ci`` is the CI-sized variant (8x8 scikit-learn
digits, no classifier).
"""

import ml_collections

from cnn_jax.data.presets import dataset_preset
from cnn_jax.tasks.gan import dcgan_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant == "ci":
    return dcgan_config(dataset_preset("digits"), epochs=4, batch_size=32, latent_dim=16,
                        widths=(32,), eval_batch_size=256)
  # Sized for a 2-core CPU: 2,500 steps of 64 on a 20k subset (about 20 minutes).
  return dcgan_config(dataset_preset("mnist", val_fraction=2000, train_subset=20000),
                      classifier_run="runs/mnist_lenet5", epochs=8, widths=(64, 32))
