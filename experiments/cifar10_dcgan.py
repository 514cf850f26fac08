"""DCGAN on CIFAR-10 (32x32 RGB): the generator projects z to a 4x4x256 map and doubles it
three times (256, 128, 64 channels), the discriminator mirrors it; the settings of
experiments/mnist_dcgan.py. ``--config.dataset.image_size=64`` trains the 64x64 networks
(one more stage each; the paper's LSUN/ImageNet size). Without a CIFAR-10 classifier run
it reports the players' losses only; set ``--config.task.classifier_run=runs/...`` to a
classification run on CIFAR-10 for the classifier FID, coverage and confidence:

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/cifar10_dcgan.py --workdir runs/cifar10_dcgan
"""

import ml_collections

from cnn_jax.tasks.gan import dcgan_config


def get_config() -> ml_collections.ConfigDict:
  dataset = ml_collections.ConfigDict({"name": "cifar10_jpeg", "file": "cifar10_jpeg.npz",
                                       "data_dir": "", "image_size": 0, "resize": "bilinear",
                                       "val_fraction": 5000, "test_fraction": 0.0})
  return dcgan_config(dataset, epochs=20, batch_size=128)
