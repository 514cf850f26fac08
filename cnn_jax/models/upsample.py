"""Learned 2x (or any integer factor) upsampling for decoders: three ways to do it.

``Upsample(features, method=...)`` maps ``[B, H, W, C] -> [B, H*f, W*f, features]``:

* ``"transpose"``: a transposed convolution with stride ``f`` (``nn.ConvTranspose``). XLA
  lowers it to a convolution whose input is dilated with zeros ("base dilation"), a form
  that XLA:CPU runs on its slow generic path (not YNNPACK) and that is known to be slow
  (jax issue 23783); it can also make checkerboard artifacts.
* ``"resize_conv"``: nearest-neighbour resize, then a ``k x k`` convolution at the output
  resolution (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").
* ``"pixel_shuffle"``: a ``k x k`` convolution to ``features * f * f`` channels at the input
  resolution, then :func:`pixel_shuffle` (depth-to-space; Shi et al. 2016, "sub-pixel
  convolution"). Each of its ``f * f`` output phases has its own ``k x k`` kernel, so it can
  express any stride-``f`` transposed convolution with kernels of up to ``k * f`` taps; it
  costs about the FLOPs of ``resize_conv``.

The default, ``pixel_shuffle``, was the fastest of the three at every decoder shape of
``benchmarks/upsampling.py`` (forward and backward on CPU, 2.5-4.8x faster than
``transpose``; see ``benchmarks/RESULTS.md``).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError

METHODS = ("transpose", "resize_conv", "pixel_shuffle")


def pixel_shuffle(x: jnp.ndarray, factor: int) -> jnp.ndarray:
  """Depth-to-space: ``[B, H, W, C * f * f] -> [B, H * f, W * f, C]``.

  Output pixel ``(h * f + i, w * f + j)``, channel ``c`` is input channel
  ``(i * f + j) * C + c`` at ``(h, w)`` (TensorFlow's ``depth_to_space`` order in NHWC).
  """
  b, h, w, channels = x.shape
  c = channels // (factor * factor)
  if c * factor * factor != channels:
    raise ConfigError(f"pixel_shuffle by {factor} needs channels divisible by {factor ** 2}, "
                      f"got {channels}.")
  x = x.reshape(b, h, w, factor, factor, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)  # [B, H, f, W, f, C]
  return x.reshape(b, h * factor, w * factor, c)


def nearest_resize(x: jnp.ndarray, factor: int) -> jnp.ndarray:
  """``[B, H, W, C] -> [B, H * f, W * f, C]``, every pixel repeated ``f x f`` times."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, factor, w, factor, c))
  return x.reshape(b, h * factor, w * factor, c)


class Upsample(nn.Module):
  """``[B, H, W, C] -> [B, H * factor, W * factor, features]`` (see the module docstring)."""
  features: int
  factor: int = 2
  method: str = "pixel_shuffle"
  kernel_size: int = 3
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    if self.method not in METHODS:
      raise ConfigError(f"Upsample method must be one of {', '.join(METHODS)}, "
                        f"got {self.method!r}.")
    f, k = self.factor, (self.kernel_size, self.kernel_size)
    x = x.astype(self.dtype)
    if self.method == "transpose":
      return nn.ConvTranspose(self.features, k, (f, f), padding="SAME", use_bias=self.use_bias,
                              dtype=self.dtype, name="conv")(x)
    if self.method == "resize_conv":
      x = nearest_resize(x, f)
    features = self.features * f * f if self.method == "pixel_shuffle" else self.features
    y = nn.Conv(features, k, padding="SAME", use_bias=self.use_bias, dtype=self.dtype,
                name="conv")(x)
    return pixel_shuffle(y, f) if self.method == "pixel_shuffle" else y
