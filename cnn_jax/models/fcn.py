"""Fully convolutional networks (Long, Shelhamer & Darrell 2015, "Fully Convolutional
Networks for Semantic Segmentation"): FCN-32s, FCN-16s and FCN-8s on a zoo backbone.

A classification network of the zoo (``backbone``, e.g. ``vgg16`` or ``resnet18``) runs
unchanged; its classifier is replaced by convolutions over its stride-32 feature map
(``fc6``: ``head_kernel x head_kernel``, ``fc7``: 1x1, each ReLU + dropout; the paper's
VGG16 net uses 4096 channels and a 7x7 ``fc6``) and a 1x1 scoring layer. Class scores
are then brought back to the input resolution:

* FCN-32s: one 32x upsampling of the stride-32 scores.
* FCN-16s: 2x upsampling, plus 1x1 scores of the stride-16 map, then 16x.
* FCN-8s: as FCN-16s, then 2x, plus the scores of the stride-8 map, then 8x.

With ``upsample="transpose"`` (the paper's) every upsampling is a learned transposed
convolution of kernel ``2f`` and stride ``f`` initialised to bilinear interpolation
(computed in its sub-pixel form, :class:`BilinearUpsample`), and
the skip scores start at zero, so training starts from the coarse prediction. Any method
of :mod:`cnn_jax.models.upsample` can be chosen instead.

The backbone's maps at strides 8, 16 and 32 are found by size among its ``stage*``
features (VGG's ``stage3 .. stage5``, ResNet's ``stage2 .. stage4``), so every zoo model
that reaches stride 32 works; H and W must be multiples of 32. The backbone's parameters
sit under ``params["backbone"]`` with the zoo's names, so a classification checkpoint of
the same model initialises them directly. The zoo models always build their classifier
head; it is created with a single output (a few unused parameters, e.g. 25,093 for VGG,
513 for ResNet-18) and ignored.

Outputs: float32 logits ``[B, H, W, num_classes]`` and features: the backbone's ``stage*``
maps and ``pre_logits`` (``fc7``, ``[B, H/32, W/32, head_width]``).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models import MODELS
from cnn_jax.models.layers import classifier_output
from cnn_jax.models.upsample import METHODS, Upsample, pixel_shuffle

OUTPUT_STRIDES = (32, 16, 8)
UPSAMPLE_CHOICES = ("transpose",) + tuple(m for m in METHODS if m != "transpose")
# The smallest classifier head each zoo model can build (only the options it has are used).
SMALLEST_HEAD = {"num_classes": 1, "dense_units": 1, "dropout_rate": 0.0}


def bilinear_kernel(factor: int, channels: int) -> np.ndarray:
  """``[2f, 2f, C, C]`` transposed-convolution kernel that upsamples each channel
  bilinearly by ``f`` (pixel centres aligned, as ``jax.image.resize(method="linear")``)."""
  size = 2 * factor
  centre = factor - 0.5
  taps = 1 - np.abs(np.arange(size) - centre) / factor
  kernel = np.zeros((size, size, channels, channels), np.float32)
  kernel[:, :, np.arange(channels), np.arange(channels)] = np.outer(taps, taps)[..., None]
  return kernel


def bilinear_init(key, shape, dtype=jnp.float32):
  """A flax initializer of :func:`bilinear_kernel` for a ``[2f, 2f, C, C]`` kernel."""
  del key
  if shape[0] != shape[1] or shape[0] % 2 or shape[2] != shape[3]:
    raise ShapeError(f"bilinear_init needs a [2f, 2f, C, C] kernel, got {list(shape)}.")
  return jnp.asarray(bilinear_kernel(shape[0] // 2, shape[2]), dtype)


def transpose_padding(factor: int) -> int:
  """The padding that makes a stride-``f``, kernel-``2f`` transposed convolution output
  ``f`` x its input, pixel centres aligned as ``jax.image.resize``."""
  return 3 * factor // 2 - 1


def subpixel_kernel(kernel: jnp.ndarray, factor: int) -> jnp.ndarray:
  """A transposed convolution's kernel ``[2f, 2f, C, D]`` (stride ``f``, padding
  :func:`transpose_padding`, ``nn.ConvTranspose``'s layout) as the ``[3, 3, C, f f D]``
  kernel of a stride-1 convolution whose :func:`~cnn_jax.models.upsample.pixel_shuffle` by
  ``f`` gives the same output (the sub-pixel form of Shi et al. 2016).

  Output phase ``i`` (pixel ``h f + i``) takes input rows ``h - 1, h, h + 1`` through kernel
  rows ``d f + pad - i`` for ``d = -1, 0, 1``; rows outside ``[0, 2f)`` are zero.
  """
  rows = np.arange(-1, 2)[:, None] * factor + transpose_padding(factor) - np.arange(factor)
  used = (rows >= 0) & (rows < 2 * factor)  # [3, f]: offset d, phase i
  rows = np.clip(rows, 0, 2 * factor - 1)
  taps = kernel[rows][:, :, rows]  # [3, f, 3, f, C, D]: dy, i, dx, j
  taps = taps * (used[:, :, None, None] & used[None, None])[..., None, None]
  channels_in, channels_out = kernel.shape[2:]
  return taps.transpose(0, 2, 4, 1, 3, 5).reshape(3, 3, channels_in,
                                                  factor * factor * channels_out)


class BilinearUpsample(nn.Module):
  """Learned ``factor`` x upsampling, initialised bilinear (FCN's "deconvolution" layer).

  A transposed convolution of kernel ``2 * factor`` and stride ``factor`` (even
  ``factor``), no bias: ``[B, H, W, C] -> [B, H * factor, W * factor, C]``; at
  initialisation it equals ``jax.image.resize(method="linear")`` away from the borders.
  Its parameter is the transposed convolution's kernel (``conv/kernel``, ``[2f, 2f, C,
  C]``), but it runs as a 3x3 convolution at the input resolution and a pixel shuffle
  (:func:`subpixel_kernel`): the same output, without the zero-dilated input that XLA:CPU
  runs on its slow generic path (FCN-32s' 64x64 kernel would cost ~420 M multiply-adds
  per 64x64 image that way).
  """
  factor: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    if self.factor < 2 or self.factor % 2:
      raise ConfigError(f"BilinearUpsample needs an even factor, got {self.factor}.")
    return _SubpixelTranspose(self.factor, self.dtype, name="conv")(x)


class _SubpixelTranspose(nn.Module):
  """The kernel of :class:`BilinearUpsample`, applied in sub-pixel form."""
  factor: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    size, channels = 2 * self.factor, x.shape[-1]
    kernel = self.param("kernel", bilinear_init, (size, size, channels, channels))
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), subpixel_kernel(kernel, self.factor).astype(self.dtype), (1, 1),
        ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return pixel_shuffle(y, self.factor)


def _maps_at_strides(features: dict, height: int, strides: tuple[int, ...],
                     backbone: str) -> dict[int, jnp.ndarray]:
  """The last ``stage*`` map of each stride (``height / map height``)."""
  found = {}
  for name, value in features.items():
    if name.startswith("stage") and value.ndim == 4 and height % value.shape[1] == 0:
      found[height // value.shape[1]] = value
  missing = [s for s in strides if s not in found]
  if missing:
    raise ConfigError(f"backbone {backbone!r} has no feature map at stride "
                      f"{', '.join(map(str, missing))} (it has {sorted(found)}); choose a zoo "
                      "model that downsamples 32x, such as vgg16 or resnet18.")
  return {s: found[s] for s in strides}


class FCN(nn.Module):
  """FCN-``output_stride``s. ``[B, H, W, C] -> ([B, H, W, num_classes], features)``."""
  backbone: str = "vgg16"
  output_stride: int = 8
  num_classes: int = 21  # PASCAL VOC: 20 classes + background
  head_width: int = 1024
  head_kernel: int = 1
  dropout_rate: float = 0.5
  upsample: str = "transpose"
  dtype: Any = jnp.float32

  def _upsample(self, x: jnp.ndarray, factor: int, name: str) -> jnp.ndarray:
    if self.upsample == "transpose":
      return BilinearUpsample(factor, self.dtype, name=name)(x)
    return Upsample(self.num_classes, factor, self.upsample, dtype=self.dtype, name=name)(x)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    if self.output_stride not in OUTPUT_STRIDES:
      raise ConfigError(f"FCN output_stride must be one of {OUTPUT_STRIDES} (FCN-32s, -16s, "
                        f"-8s), got {self.output_stride}.")
    if self.upsample not in UPSAMPLE_CHOICES:
      raise ConfigError(f"FCN upsample must be one of {', '.join(UPSAMPLE_CHOICES)}, got "
                        f"{self.upsample!r}.")
    if x.ndim != 4 or x.shape[1] % 32 or x.shape[2] % 32:
      raise ShapeError(f"FCN takes images [B, H, W, C] with H and W multiples of 32, got "
                       f"{list(x.shape)}; set dataset.image_size to a multiple of 32.")
    from cnn_jax.models import model_options  # defined after the zoo's family imports
    head = {k: v for k, v in SMALLEST_HEAD.items() if k in model_options(self.backbone)}
    network = MODELS.get(self.backbone)(dtype=self.dtype, **head, name="backbone")
    _, backbone_features = network(x, train=train)
    strides = tuple(s for s in OUTPUT_STRIDES if s >= self.output_stride)
    maps = _maps_at_strides(backbone_features, x.shape[1], strides, self.backbone)
    features = {k: v for k, v in backbone_features.items() if k.startswith("stage")}

    conv = functools.partial(nn.Conv, dtype=self.dtype)
    y = maps[32].astype(self.dtype)
    for name, kernel in (("fc6", self.head_kernel), ("fc7", 1)):
      y = nn.relu(conv(self.head_width, (kernel, kernel), padding="SAME", name=name)(y))
      y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    features["pre_logits"] = y
    scores = conv(self.num_classes, (1, 1), name="score32")(y)
    for stride in strides[1:]:
      skip = conv(self.num_classes, (1, 1), kernel_init=nn.initializers.zeros,
                  name=f"score{stride}")(maps[stride].astype(self.dtype))
      scores = self._upsample(scores, 2, f"up{2 * stride}to{stride}") + skip
    logits = self._upsample(scores, self.output_stride, f"up{self.output_stride}to1")
    return classifier_output(logits), features


def _register(stride: int, backbone: str) -> None:
  name = f"fcn{stride}s_{backbone}"

  @MODELS.register(name, input_shape=(64, 64, 3), output="mask")
  def variant(**kw) -> FCN:
    return FCN(backbone=backbone, output_stride=stride, **kw)

  variant.__name__ = variant.__qualname__ = name
  variant.__doc__ = f"FCN-{stride}s on {backbone}."


for _backbone in ("vgg16", "resnet18", "resnet50"):
  for _stride in OUTPUT_STRIDES:
    _register(_stride, _backbone)
