"""Image domains built offline for domain translation: MNIST and MNIST-M-style digits.

Ganin et al. 2016 ("Domain-Adversarial Training of Neural Networks", section 5.1) built
MNIST-M by blending MNIST digits over random colour patches cut from BSDS500 photos: the
output is ``|patch - digit|`` per channel, so the patch shows unchanged around the digit
and colour-inverted inside it. :func:`mnist_m` does the same with random patches cut from
CIFAR-10 images (the offline photos we have), deterministically from a seed.

:func:`load_domains` reads ``mnist.npz`` and ``cifar10_jpeg.npz`` from the data directory
(``dataset.data_dir`` or ``$CNN_JAX_DATA_DIR``) and returns both domains with labels;
the ``mnist_m`` source serves the MNIST-M-style domain alone.
"""

import ml_collections
import numpy as np

from cnn_jax.data.local_files import load_cifar10_jpeg
from cnn_jax.data.sources import SOURCES, ArrayData, load_npz
from cnn_jax.errors import DataError

# Images per vectorised chunk: bounds the int16 temporaries to about 10 MB per 1000 images.
CHUNK = 4096


def _pad_to(images: np.ndarray, size: int) -> np.ndarray:
  """Zero-pads ``[N, h, w, C]`` images around the centre to ``[N, size, size, C]``."""
  pad_h, pad_w = size - images.shape[1], size - images.shape[2]
  return np.pad(images, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                         (pad_w // 2, pad_w - pad_w // 2), (0, 0)))


def mnist_m(mnist_images: np.ndarray, cifar_images: np.ndarray,
            seed: int | np.random.SeedSequence, size: int = 28) -> np.ndarray:
  """MNIST-M-style digits: ``|patch - digit|`` over random CIFAR-10 patches.

  Each digit gets its own random CIFAR image and a random ``size x size`` crop of it; the
  digits are zero-padded to ``size`` around the centre first.

  Args:
    mnist_images: uint8 ``[N, 28, 28, 1]`` (or ``[N, 28, 28]``) white digits on black.
    cifar_images: uint8 ``[M, 32, 32, 3]`` colour photos to cut patches from.
    seed: the same seed, digits and photos give the same bytes.
    size: output side, from the digit side (28) up to the photo side (32).

  Returns:
    uint8 ``[N, size, size, 3]``.
  """
  digits = np.asarray(mnist_images)
  digits = digits[..., None] if digits.ndim == 3 else digits
  photos = np.asarray(cifar_images)
  if digits.ndim != 4 or digits.shape[-1] != 1 or digits.dtype != np.uint8:
    raise DataError(f"mnist_m takes uint8 grayscale digits [N, H, W, 1], got "
                    f"{digits.dtype} {list(digits.shape)}.")
  if photos.ndim != 4 or photos.shape[-1] != 3 or photos.dtype != np.uint8 or not len(photos):
    raise DataError(f"mnist_m takes uint8 colour photos [M, H, W, 3] (M >= 1), got "
                    f"{photos.dtype} {list(photos.shape)}.")
  if not max(digits.shape[1:3]) <= size <= min(photos.shape[1:3]):
    raise DataError(f"mnist_m size must lie between the digit side {max(digits.shape[1:3])} "
                    f"and the photo side {min(photos.shape[1:3])}, got {size}.")
  rng = np.random.default_rng(seed)
  n = len(digits)
  photo_index = rng.integers(len(photos), size=n)
  top = rng.integers(photos.shape[1] - size + 1, size=n)
  left = rng.integers(photos.shape[2] - size + 1, size=n)
  digits = _pad_to(digits, size)
  offsets = np.arange(size)
  out = np.empty((n, size, size, 3), np.uint8)
  for start in range(0, n, CHUNK):
    part = slice(start, start + CHUNK)
    rows = (top[part, None] + offsets)[:, :, None]       # [n, size, 1]
    cols = (left[part, None] + offsets)[:, None, :]      # [n, 1, size]
    patches = photos[photo_index[part, None, None], rows, cols]  # [n, size, size, 3]
    out[part] = np.abs(patches.astype(np.int16) - digits[part].astype(np.int16))
  return out


def _section(cfg: ml_collections.ConfigDict, file_key: str, default: str
             ) -> ml_collections.ConfigDict:
  """A copy of the dataset section whose ``file`` is ``cfg.<file_key>`` (or ``default``)."""
  section = ml_collections.ConfigDict(cfg.to_dict())
  section.file = cfg.get(file_key) or default
  return section


def load_domains(cfg: ml_collections.ConfigDict) -> tuple[ArrayData, ArrayData]:
  """MNIST and its MNIST-M-style twin, with the digit labels, train and test.

  Config (the ``dataset`` section): ``mnist_file`` (default ``"mnist.npz"``),
  ``cifar_file`` (default ``"cifar10_jpeg.npz"``), ``seed`` (default 0), ``image_size``
  (default 28; up to 32, both domains zero-padded around the digits) and the
  ``cifar10_jpeg`` keys (``cache_dir``, ``decode_workers``). Train digits take patches of
  CIFAR-10 train photos, test digits of test photos, each with its own seed.

  Returns:
    ``(mnist, mnist_m)``: uint8 ``[N, size, size, 1]`` and ``[N, size, size, 3]`` images
    with the same int32 labels and class names "0" .. "9".
  """
  digits = load_npz(_section(cfg, "mnist_file", "mnist.npz"))
  photos = load_cifar10_jpeg(_section(cfg, "cifar_file", "cifar10_jpeg.npz"))
  if digits.test is None or photos.test is None:
    raise DataError("load_domains needs train and test splits in both the MNIST and the "
                    "CIFAR-10 files (x_test/y_test, test_jpeg).")
  size = int(cfg.get("image_size") or 28)
  train_seed, test_seed = np.random.SeedSequence(int(cfg.get("seed") or 0)).spawn(2)

  def colour(split: dict, photo_split: dict, seed: np.random.SeedSequence) -> dict:
    return {"image": mnist_m(split["image"], photo_split["image"], seed, size),
            "label": split["label"]}

  gray = {name: {"image": _pad_to(split["image"], size), "label": split["label"]}
          for name, split in (("train", digits.train), ("test", digits.test))}
  mnist = ArrayData(gray["train"], gray["test"], digits.class_names)
  coloured = ArrayData(colour(digits.train, photos.train, train_seed),
                       colour(digits.test, photos.test, test_seed), digits.class_names)
  return mnist, coloured


@SOURCES.register("mnist_m")
def load_mnist_m(cfg: ml_collections.ConfigDict) -> ArrayData:
  """The MNIST-M-style domain of :func:`load_domains` as a dataset source."""
  return load_domains(cfg)[1]
