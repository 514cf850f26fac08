"""U-Net (Ronneberger, Fischer & Brox 2015, "U-Net: Convolutional Networks for Biomedical
Image Segmentation"): per-pixel logits from an encoder-decoder with skip connections.

The contracting path has ``depth`` levels of two 3x3 convolutions + ReLU followed by a 2x2
max pool, doubling the width each level (64, 128, 256, 512 in the paper, bottleneck 1024).
The expanding path upsamples 2x, halves the width, concatenates the encoder map of the
same level and applies two 3x3 convolutions; a 1x1 convolution gives the class scores.

* ``padding="same"`` (default) keeps the output at the input size; ``H`` and ``W`` must
  be multiples of ``2 ** depth``.
* ``padding="valid"`` is the paper's layout: unpadded convolutions, skip maps centre-cropped
  to the decoder map, an output smaller than the input (572x572 -> 388x388 at depth 4;
  see :func:`valid_output_size` and crop the labels with :func:`center_crop`).
* ``upsample``: any method of :mod:`cnn_jax.models.upsample`; the default ``"transpose"``
  with ``upsample_kernel=2`` is the paper's 2x2 up-convolution.
* ``use_batch_norm`` puts batch norm after every 3x3 convolution (the paper has none; it
  makes training from scratch much less sensitive to the learning rate).

Without batch norm the convolutions are initialised He-normal (std ``sqrt(2 / fan_in)``)
as in the paper. The paper's network (``unet_paper``: 1 input channel, 2 classes) has
31,030,658 parameters (counted layer by layer from its figure 1).

``model.apply(variables, images, train=...)`` returns ``(logits, features)``: float32
``[B, H', W', num_classes]`` (``H' = H`` with same padding) and ``stage1 .. stage{depth}``
(the encoder maps before pooling), ``bottleneck``, ``decoder{depth} .. decoder1`` and
``pre_logits`` (``[B, H', W', base_width]``, the input of the 1x1 classifier).
"""

import itertools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models import MODELS
from cnn_jax.models.layers import ConvBN, classifier_output
from cnn_jax.models.upsample import METHODS, Upsample

PADDINGS = ("same", "valid")


def center_crop(x: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
  """The central ``height x width`` window of ``x`` ``[B, H, W, ...]`` (masks or maps)."""
  top, left = (x.shape[1] - height) // 2, (x.shape[2] - width) // 2
  if top < 0 or left < 0:
    raise ShapeError(f"cannot crop {list(x.shape[1:3])} to a larger {[height, width]}.")
  return x[:, top:top + height, left:left + width]


def valid_output_size(size: int, depth: int) -> int:
  """Output side of a valid-padding U-Net of ``depth`` levels for an input side ``size``.

  Raises:
    ShapeError: if a map before a pool has an odd side or the output would be empty; the
      message names the nearest input sizes that work.
  """
  def output(side: int) -> int | None:
    for _ in range(depth):
      side -= 4
      if side <= 0 or side % 2:
        return None
      side //= 2
    side -= 4
    for _ in range(depth):
      side = 2 * side - 4
    return side if side > 0 else None

  result = output(size)
  if result is None:
    larger = next(s for s in itertools.count(size + 1) if output(s))
    smaller = next((s for s in range(size - 1, 0, -1) if output(s)), None)
    near = f"{smaller} or {larger}" if smaller else str(larger)
    raise ShapeError(f"a valid-padding U-Net of depth {depth} cannot take {size}-pixel inputs "
                     f"(a map before a pool would be odd or empty); use e.g. {near}.")
  return result


class DoubleConv(nn.Module):
  """Two 3x3 convolutions, each followed by (batch norm and) ReLU. ``[B,H,W,C] -> [B,H',W',F]``."""
  features: int
  padding: str = "SAME"
  use_batch_norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    for i in range(2):
      if self.use_batch_norm:
        x = ConvBN(self.features, padding=self.padding, dtype=self.dtype, name=f"conv{i + 1}")(
            x, train)
      else:
        x = nn.relu(nn.Conv(self.features, (3, 3), padding=self.padding, dtype=self.dtype,
                            kernel_init=nn.initializers.he_normal(), name=f"conv{i + 1}")(x))
    return x


class UNet(nn.Module):
  """U-Net. ``[B, H, W, C] -> ([B, H', W', num_classes], features)`` (see the module doc)."""
  num_classes: int = 2
  depth: int = 4
  base_width: int = 64
  padding: str = "same"
  upsample: str = "transpose"
  upsample_kernel: int = 2
  use_batch_norm: bool = True
  dropout_rate: float = 0.0  # on the bottleneck (the paper drops out at the end of the encoder)
  dtype: Any = jnp.float32

  def _check(self, shape: tuple[int, ...]) -> None:
    if self.padding not in PADDINGS:
      raise ConfigError(f"U-Net padding must be one of {', '.join(PADDINGS)}, got "
                        f"{self.padding!r}.")
    if self.upsample not in METHODS:
      raise ConfigError(f"U-Net upsample must be one of {', '.join(METHODS)}, got "
                        f"{self.upsample!r}.")
    if self.depth < 1 or self.base_width < 1:
      raise ConfigError(f"U-Net needs depth >= 1 and base_width >= 1, got {self.depth} and "
                        f"{self.base_width}.")
    if len(shape) != 4:
      raise ShapeError(f"U-Net takes images [B, H, W, C], got {list(shape)}.")
    if self.padding == "valid":
      for side in shape[1:3]:
        valid_output_size(side, self.depth)
    elif shape[1] % 2 ** self.depth or shape[2] % 2 ** self.depth:
      raise ShapeError(f"a same-padding U-Net of depth {self.depth} needs H and W divisible by "
                       f"{2 ** self.depth}, got {list(shape[1:3])}; resize or pad the images "
                       "(dataset.image_size) or lower model.depth.")

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    self._check(x.shape)
    conv = lambda features, name: DoubleConv(features, self.padding.upper(), self.use_batch_norm,
                                             self.dtype, name=name)
    features, skips = {}, []
    x = x.astype(self.dtype)
    for level in range(self.depth):
      x = conv(self.base_width * 2 ** level, f"encoder{level + 1}")(x, train)
      features[f"stage{level + 1}"] = x
      skips.append(x)
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = conv(self.base_width * 2 ** self.depth, "bottleneck")(x, train)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    features["bottleneck"] = x
    for level in reversed(range(self.depth)):
      width = self.base_width * 2 ** level
      x = Upsample(width, 2, self.upsample, self.upsample_kernel, dtype=self.dtype,
                   name=f"up{level + 1}")(x)
      skip = center_crop(skips[level], x.shape[1], x.shape[2])
      x = conv(width, f"decoder{level + 1}")(jnp.concatenate([skip, x], axis=-1), train)
      features[f"decoder{level + 1}"] = x
    features["pre_logits"] = x
    logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="classifier")(x)
    return classifier_output(logits), features


@MODELS.register("unet", input_shape=(64, 64, 3), output="mask")
def unet(**kw) -> UNet:
  return UNet(**kw)


@MODELS.register("unet_small", input_shape=(32, 32, 3), output="mask")
def unet_small(**kw) -> UNet:
  """Depth 3, 16 channels at full resolution: for small images and CPU experiments."""
  kw = {"depth": 3, "base_width": 16, **kw}
  return UNet(**kw)


@MODELS.register("unet_paper", input_shape=(572, 572, 1), output="mask")
def unet_paper(**kw) -> UNet:
  """The paper's network: valid padding, no batch norm, 2x2 up-convolutions."""
  kw = {"padding": "valid", "use_batch_norm": False, **kw}
  return UNet(**kw)
