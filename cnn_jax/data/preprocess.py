"""Host-side preprocessing done once per run: uint8 -> float32 in [0, 1], resize or pad.

Normalization by mean/std happens later, on the device, after augmentation.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax.errors import ConfigError


def to_model_input(images: np.ndarray, cfg: ml_collections.ConfigDict,
                   chunk: int = 4096) -> np.ndarray:
  """uint8 ``[N, H, W, C]`` -> float32 ``[N, S, S, C]`` for ``S = dataset.image_size``.

  ``dataset.resize``: ``"bilinear"`` (antialiased) or ``"pad"`` (zero-pad, centred; e.g.
  28x28 MNIST -> 32x32 as in LeNet-5).
  """
  x = images.astype(np.float32) / 255.0
  size = cfg.get("image_size")
  if size and x.shape[1:3] != (size, size):
    method = cfg.get("resize", "bilinear")
    if method == "pad":
      ph, pw = size - x.shape[1], size - x.shape[2]
      if ph < 0 or pw < 0:
        raise ConfigError(f"dataset.resize='pad' cannot shrink {x.shape[1]}x{x.shape[2]} "
                          f"images to {size}x{size}; use resize='bilinear'.")
      x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    elif method == "bilinear":
      resize = jax.jit(lambda b: jax.image.resize(b, (b.shape[0], size, size, b.shape[3]),
                                                  "bilinear", antialias=True))
      x = np.concatenate([np.asarray(resize(jnp.asarray(x[i:i + chunk])))
                          for i in range(0, len(x), chunk)]) if len(x) else x
    else:
      raise ConfigError(f"dataset.resize must be 'bilinear' or 'pad', got {method!r}.")
  return x.astype(np.float32)


def normalization(cfg: ml_collections.ConfigDict) -> tuple | None:
  """``(mean, std)`` from ``dataset.mean``/``dataset.std`` (scalars or per channel, on the
  [0, 1] scale), or ``dataset.normalize`` naming a known dataset (``"cifar10"``, ...)."""
  from cnn_jax.data.augment import NORMALIZATION
  if cfg.get("normalize"):
    if cfg.normalize not in NORMALIZATION:
      raise ConfigError(f"dataset.normalize={cfg.normalize!r} is unknown; choose one of "
                        f"{', '.join(NORMALIZATION)} or set dataset.mean and dataset.std.")
    return NORMALIZATION[cfg.normalize]
  mean, std = cfg.get("mean"), cfg.get("std")
  if mean is None or std is None:
    return None
  as_tuple = lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,)  # noqa: E731
  return as_tuple(mean), as_tuple(std)
