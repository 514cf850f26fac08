"""Unpaired two-domain datasets for image translation (CycleGAN), as dataset sources.

Each split holds domain A under the usual keys and domain B beside it::

  {"image": uint8 [N, H, W, C_a], "label": int32 [N],       # domain A
   "image_b": uint8 [N, H, W, C_b], "label_b": int32 [N]}   # domain B, an independent draw

Row ``i`` of B is made from a different, randomly chosen digit than row ``i`` of A (a
seeded permutation), so the pairs carry no correspondence: the data are unpaired, as
CycleGAN assumes. The B labels are kept only to measure label preservation.

* ``mnist_mnistm``: MNIST <-> MNIST-M-style digits over CIFAR-10 patches
  (:func:`cnn_jax.data.domains.load_domains`; needs ``mnist.npz`` and ``cifar10_jpeg.npz``).
* ``digits_colour_pair``: scikit-learn's 8x8 digits <-> the same kind of blend over random
  colour blocks instead of photos (no files needed; the CI-sized pair).
"""

import ml_collections
import numpy as np

from cnn_jax.data.domains import load_domains, mnist_m
from cnn_jax.data.sources import SOURCES, ArrayData, load_digits

# Colour blocks per side of a digits_colour_pair background (2x2 blocks of random colour).
BLOCKS_PER_SIDE = 2


def unpaired(domain_a: dict, domain_b: dict, seed: np.random.SeedSequence) -> dict:
  """One split: A's ``image``/``label`` and B's rows in a seeded random order as
  ``image_b``/``label_b`` (both domains must have the same number of rows)."""
  order = np.random.default_rng(seed).permutation(len(domain_b["image"]))
  return {"image": domain_a["image"], "label": domain_a["label"],
          "image_b": domain_b["image"][order], "label_b": domain_b["label"][order]}


@SOURCES.register("mnist_mnistm")
def load_mnist_mnistm(cfg: ml_collections.ConfigDict) -> ArrayData:
  """MNIST (A) and MNIST-M-style digits (B), unpaired; the ``dataset`` keys of
  :func:`~cnn_jax.data.domains.load_domains` (``image_size``, ``seed``, files)."""
  mnist, coloured = load_domains(cfg)
  train_seed, test_seed = np.random.SeedSequence(int(cfg.get("seed") or 0) + 1).spawn(2)
  return ArrayData(unpaired(mnist.train, coloured.train, train_seed),
                   unpaired(mnist.test, coloured.test, test_seed), mnist.class_names)


def colour_blocks(count: int, side: int, seed: np.random.SeedSequence) -> np.ndarray:
  """uint8 ``[count, side, side, 3]`` backgrounds of 2x2 random-colour blocks."""
  rng = np.random.default_rng(seed)
  blocks = rng.integers(0, 256, (count, BLOCKS_PER_SIDE, BLOCKS_PER_SIDE, 3), dtype=np.uint8)
  repeat = -(-side // BLOCKS_PER_SIDE)
  return blocks.repeat(repeat, axis=1).repeat(repeat, axis=2)[:, :side, :side]


@SOURCES.register("digits_colour_pair")
def load_digits_colour_pair(cfg: ml_collections.ConfigDict) -> ArrayData:
  """scikit-learn's 8x8 digits (A) and ``|background - digit|`` over colour blocks (B),
  unpaired, train only (the split config holds a test set out); ``dataset.seed``."""
  source = load_digits(cfg)
  digits = source.train
  blocks_seed, blend_seed, order_seed = np.random.SeedSequence(int(cfg.get("seed") or 0)).spawn(3)
  side = digits["image"].shape[1]
  coloured = {"image": mnist_m(digits["image"], colour_blocks(len(digits["image"]), side,
                                                              blocks_seed), blend_seed, side),
              "label": digits["label"]}
  return ArrayData(unpaired(digits, coloured, order_seed), None, source.class_names)
