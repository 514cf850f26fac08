"""Padding modes: what the pixels added around an image hold.

* ``"zeros"``: zeros, the default of every framework ("zero padding" in the notes).
* ``"replicate"``: copies of the nearest border pixel ("copy padding"; ``np.pad`` mode
  ``"edge"``, PyTorch's ``"replicate"``).
* ``"reflect"``: the image mirrored about its border pixel, which is not repeated
  (``np.pad``/PyTorch ``"reflect"``: ``[a b c | b a]``); U-Net's mirror padding.
"""

from typing import Sequence

import jax.numpy as jnp

from cnn_jax.errors import ConfigError

# Our mode name -> jnp.pad mode.
PADDING_MODES = {"zeros": "constant", "replicate": "edge", "reflect": "reflect"}


def check_padding_mode(mode: str) -> str:
  """Returns ``mode`` if it is a known padding mode, else raises :class:`ConfigError`."""
  if mode not in PADDING_MODES:
    raise ConfigError(f"Unknown padding mode {mode!r}; choose one of "
                      f"{', '.join(PADDING_MODES)}.")
  return mode


def pad_images(images: jnp.ndarray, pads: Sequence[tuple[int, int]],
               mode: str = "zeros") -> jnp.ndarray:
  """Pads the spatial axes of ``[B, H, W, C]`` images by ``pads = ((top, bottom), (left,
  right))`` with ``mode``; returns ``[B, H + top + bottom, W + left + right, C]``.

  Raises:
    ConfigError: for an unknown mode, or reflect padding wider than the image minus one.
  """
  check_padding_mode(mode)
  if mode == "reflect":
    for (before, after), size in zip(pads, images.shape[1:3]):
      if max(before, after) >= size:
        raise ConfigError(f"Reflect padding of {max(before, after)} needs an image larger "
                          f"than that, got {size} pixels; use 'replicate' or 'zeros'.")
  widths = ((0, 0), *(tuple(p) for p in pads), (0, 0))
  return jnp.pad(images, widths, mode=PADDING_MODES[mode])
