"""Convolution arithmetic: output sizes, padding amounts and parameter counts, in plain Python.

All sizes are along one spatial axis (apply the functions per axis for ``H`` and ``W``).
For an input of ``N_in`` pixels, a kernel of ``k`` taps with dilation ``d`` (effective size
``k_eff = d (k - 1) + 1``), stride ``s`` and ``p`` zero pixels added on each side, the
course notes' formula (Dumoulin & Visin 2016, "A guide to convolution arithmetic") is::

  N_out = floor((N_in + 2p - k_eff) / s) + 1

When ``s`` does not divide ``N_in + 2p - k_eff`` the last rows of the padded input are never
under the kernel: those pixels are silently dropped, and :func:`conv_output_size` warns.

Besides integers, ``padding`` may be Keras'/TensorFlow's names (flax uses the same rules):

* ``"valid"``: no padding, ``p = 0``.
* ``"same"``: ``N_out = ceil(N_in / s)``; the total padding
  ``max((N_out - 1) s + k_eff - N_in, 0)`` is split with the odd pixel at the end
  (bottom/right), e.g. ``k = 3, s = 2`` pads 0 before and 1 after on an even input and 1 on
  both sides on an odd one.
"""

import math
import warnings
from typing import Union

from cnn_jax.errors import ConfigError

Padding = Union[int, str, tuple[int, int]]


def _check_positive(**values: int) -> None:
  for name, value in values.items():
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(f"{name} must be a positive integer, got {value!r}.")


def effective_kernel_size(kernel_size: int, dilation: int = 1) -> int:
  """The span of a dilated kernel: ``dilation * (kernel_size - 1) + 1`` input pixels."""
  _check_positive(kernel_size=kernel_size, dilation=dilation)
  return dilation * (kernel_size - 1) + 1


def padding_amounts(size: int, kernel_size: int, stride: int = 1, padding: Padding = 0,
                    dilation: int = 1) -> tuple[int, int]:
  """The ``(before, after)`` pixels of padding that ``padding`` means on an axis of ``size``.

  ``padding`` is an int (the same on both sides), a ``(before, after)`` pair, ``"valid"`` or
  ``"same"`` (see the module docstring for the asymmetric split).

  Raises:
    ConfigError: for a negative amount or an unknown padding name.
  """
  _check_positive(size=size, stride=stride)
  span = effective_kernel_size(kernel_size, dilation)
  if isinstance(padding, str):
    name = padding.lower()
    if name == "valid":
      return 0, 0
    if name == "same":
      total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
      return total // 2, total - total // 2
    raise ConfigError(f"Unknown padding {padding!r}; use an int, a (before, after) pair, "
                      "'valid' or 'same'.")
  pair = (padding, padding) if isinstance(padding, int) else tuple(padding)
  if len(pair) != 2 or any(not isinstance(p, int) or p < 0 for p in pair):
    raise ConfigError(f"Padding must be a non-negative int or (before, after) pair, "
                      f"got {padding!r}.")
  return pair


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: Padding = 0,
                     dilation: int = 1) -> int:
  """Output length of a convolution: ``floor((N_in + p_before + p_after - k_eff) / s) + 1``.

  Warns (``UserWarning``) when the division is inexact, saying how many rows of the padded
  input, and how many of them image pixels, are dropped. E.g. the notes' ``5`` pixels with
  ``k = 3, p = 1, s = 2`` give ``3`` exactly; ``6`` pixels also give ``3`` but drop one row.

  Raises:
    ConfigError: when the kernel is larger than the padded input.
  """
  before, after = padding_amounts(size, kernel_size, stride, padding, dilation)
  span = effective_kernel_size(kernel_size, dilation)
  covered = size + before + after - span
  if covered < 0:
    raise ConfigError(f"A kernel spanning {span} pixels does not fit an input of {size} "
                      f"pixels padded by ({before}, {after}); use a smaller kernel or more "
                      "padding.")
  dropped = covered % stride
  if dropped:
    image_pixels = max(dropped - after, 0)
    warnings.warn(
        f"(N_in + 2p - k) / s = ({size} + {before + after} - {span}) / {stride} is not an "
        f"integer: the last {dropped} row(s) of the padded input ({image_pixels} of them "
        "image pixels) are never seen by the kernel.", stacklevel=2)
  return covered // stride + 1


def pool_output_size(size: int, pool_size: int, stride: int | None = None,
                     padding: Padding = 0) -> int:
  """Output length of a pooling layer; ``stride`` defaults to ``pool_size`` (as in Keras).

  The arithmetic is the convolution's, e.g. 28 -> 14 -> 7 through two 2x2 pools.
  """
  return conv_output_size(size, pool_size, pool_size if stride is None else stride, padding)


def transposed_conv_output_size(size: int, kernel_size: int, stride: int = 1,
                                padding: Padding = 0, output_padding: int = 0,
                                dilation: int = 1) -> int:
  """Output length of a transposed convolution, the inverse map of :func:`conv_output_size`.

  With an int padding ``p`` (PyTorch's ``ConvTranspose2d``)::

    N_out = (N_in - 1) s - 2p + k_eff + output_padding

  ``"same"`` gives ``N_in * s`` and ``"valid"`` gives ``N_in * s + max(k_eff - s, 0)`` (Keras'
  ``Conv2DTranspose`` and flax's ``ConvTranspose``); ``output_padding`` (``< s``) picks one of
  the ``s`` input sizes that a strided convolution maps to the same ``N_in``.
  """
  _check_positive(size=size, stride=stride)
  span = effective_kernel_size(kernel_size, dilation)
  if not 0 <= output_padding < max(stride, dilation):
    raise ConfigError(f"output_padding must be in [0, max(stride, dilation)), got "
                      f"{output_padding}.")
  if isinstance(padding, str):
    name = padding.lower()
    if name not in ("same", "valid"):
      padding_amounts(size, kernel_size, stride, padding)  # raises the unknown-name error
    base = size * stride if name == "same" else size * stride + max(span - stride, 0)
    return base + output_padding
  before, after = padding_amounts(size, kernel_size, stride, padding, dilation)
  out = (size - 1) * stride - before - after + span + output_padding
  if out < 1:
    raise ConfigError(f"Padding {padding!r} leaves no output for {size} input pixels.")
  return out


def conv_params(kernel_size: int | tuple[int, int], in_channels: int, filters: int,
                use_bias: bool = True, groups: int = 1) -> int:
  """Parameters of a 2D convolution: ``(k_h k_w C_in / groups + bias) * filters``.

  The notes' example: 64 kernels of 7x7 on one channel learn ``(7*7 + 1) * 64 = 3,200``.
  """
  kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
  _check_positive(kernel_height=kh, kernel_width=kw, in_channels=in_channels,
                  filters=filters, groups=groups)
  if in_channels % groups or filters % groups:
    raise ConfigError(f"groups={groups} must divide in_channels={in_channels} and "
                      f"filters={filters}.")
  return (kh * kw * in_channels // groups + int(use_bias)) * filters


def dense_params(in_features: int, units: int, use_bias: bool = True) -> int:
  """Parameters of a dense layer: ``(in_features + bias) * units``.

  On a flattened ``H x W x C`` image ``in_features = H W C``: a 28x28 digit into 64 units
  already needs 50,240, against 3,200 for 64 7x7 convolution kernels.
  """
  _check_positive(in_features=in_features, units=units)
  return (in_features + int(use_bias)) * units
