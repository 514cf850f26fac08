"""Building blocks shared by the model families.

Convolutions go through :func:`conv`, an ``nn.Conv`` (same parameters, names and shapes)
whose implementation is chosen by ``conv_impl``: ``"xla"`` is ``lax.conv_general_dilated``;
``"im2col"`` (:func:`im2col_conv`) concatenates the kernel's shifted views of the input on
the channel axis and does one matrix product; ``"space_to_depth"``
(:func:`space_to_depth_conv`) folds 2x2 pixel blocks into channels and convolves those, a
convolution with 4x the channels that XLA:CPU runs in its fast library; ``"auto"`` (the
default) takes one of the two on the CPU for the shapes where it was measured faster
(:func:`auto_conv_impl`, ``benchmarks/conv_paths.py``) and XLA's convolution everywhere
else.
"""

import contextlib
import contextvars
import functools
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.basics.arithmetic import padding_amounts
from cnn_jax.basics.padding import check_padding_mode, pad_images
from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models.normalization import BatchNorm

ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid, "gelu": nn.gelu,
    "elu": nn.elu, "leaky_relu": nn.leaky_relu, "silu": nn.silu, "identity": lambda x: x,
}


def activation(name: str) -> Callable:
  """Looks up an activation function by name (``relu``, ``tanh``, ``gelu``, ...)."""
  if name not in ACTIVATIONS:
    raise ConfigError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
  return ACTIVATIONS[name]


CONV_IMPLS = ("auto", "xla", "im2col", "space_to_depth")
# The dimension numbers nn.Conv passes for 2-D images: NHWC inputs and outputs, HWIO kernels.
_NHWC = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def _is_nhwc_2d(lhs_shape, rhs_shape, dimension_numbers, batch_group_count: int) -> bool:
  """Whether a convolution is one that :func:`im2col_conv` computes (2-D, NHWC, HWIO)."""
  if len(lhs_shape) != 4 or len(rhs_shape) != 4 or batch_group_count != 1:
    return False
  numbers = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  return tuple(numbers) == tuple(_NHWC)


def im2col_conv(lhs: jax.Array, rhs: jax.Array, window_strides, padding, lhs_dilation=None,
                rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                batch_group_count: int = 1, precision=None,
                preferred_element_type=None) -> jax.Array:
  """``lax.conv_general_dilated`` of NHWC images with HWIO kernels as one matrix product.

  ``[B, H, W, C] (*) [kh, kw, C / G, F] -> [B, H', W', F]``. The input is zero-padded (and
  dilated, for ``lhs_dilation``); the ``kh * kw`` shifted, strided views of it that the
  kernel taps see are concatenated on the channel axis into patches
  ``[B, H', W', kh * kw * C]`` (tap-major, as the kernel's HWIO layout), which are
  multiplied with the kernel reshaped to ``[kh * kw * C, F]``. With ``G`` feature groups
  the product is taken per group. The arguments are those of ``lax.conv_general_dilated``;
  the gradient is whatever autodiff makes of slices, a concatenation and a dot.

  Raises:
    ConfigError: the convolution is not 2-D NHWC/HWIO or uses ``batch_group_count``.
  """
  if not _is_nhwc_2d(lhs.shape, rhs.shape, dimension_numbers, batch_group_count):
    raise ConfigError(f"conv_impl='im2col' computes 2-D NHWC convolutions only (got input "
                      f"{list(lhs.shape)}, kernel {list(rhs.shape)}); use conv_impl='xla'.")
  batch, channels = lhs.shape[0], lhs.shape[3]
  kernel_h, kernel_w, group_channels, features = rhs.shape
  lhs_dilation = tuple(lhs_dilation or (1, 1))
  rhs_dilation = tuple(rhs_dilation or (1, 1))
  reach = [(k - 1) * d + 1 for k, d in zip((kernel_h, kernel_w), rhs_dilation)]
  if isinstance(padding, str):  # as lax does: from the undilated input size
    padding = lax.padtype_to_pads(lhs.shape[1:3], reach, window_strides, padding)
  x = lax.pad(lhs, jnp.zeros((), lhs.dtype),
              [(0, 0, 0)] + [(lo, hi, d - 1) for (lo, hi), d in zip(padding, lhs_dilation)]
              + [(0, 0, 0)])
  out_h, out_w = [(size - r) // s + 1
                  for size, r, s in zip(x.shape[1:3], reach, window_strides)]
  stride_h, stride_w = window_strides
  views = []
  for i in range(kernel_h):
    for j in range(kernel_w):
      top, left = i * rhs_dilation[0], j * rhs_dilation[1]
      views.append(lax.slice(
          x, (0, top, left, 0),
          (batch, top + (out_h - 1) * stride_h + 1, left + (out_w - 1) * stride_w + 1, channels),
          (1, stride_h, stride_w, 1)))
  patches = views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)
  dot = functools.partial(jnp.einsum, precision=precision,
                          preferred_element_type=preferred_element_type)
  if feature_group_count == 1:
    return dot("bhwk,kf->bhwf", patches, rhs.reshape(-1, features))
  groups = feature_group_count
  patches = patches.reshape(batch, out_h, out_w, kernel_h * kernel_w, groups, group_channels)
  kernel = rhs.reshape(kernel_h * kernel_w, group_channels, groups, features // groups)
  y = dot("bhwtgc,tcgf->bhwgf", patches, kernel)
  return y.reshape(batch, out_h, out_w, features)


def _block_taps(kernel_size: int) -> np.ndarray:
  """``[K', 2, 2, K]`` one-hot: entry ``(m, p, a, u)`` is 1 where tap ``u`` of a size-K
  kernel links input pixel ``p`` of block ``i + m`` to output pixel ``a`` of block ``i``
  (``u = 2m + p - a``), for 2-pixel blocks; ``K' = K // 2 + 1`` block taps."""
  taps = np.zeros((kernel_size // 2 + 1, 2, 2, kernel_size), np.float32)
  for m, p, a in np.ndindex(taps.shape[:3]):
    if 0 <= 2 * m + p - a < kernel_size:
      taps[m, p, a, 2 * m + p - a] = 1.0
  return taps


def space_to_depth_conv(lhs: jax.Array, rhs: jax.Array, window_strides, padding,
                        lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                        feature_group_count: int = 1, batch_group_count: int = 1,
                        precision=None, preferred_element_type=None) -> jax.Array:
  """``lax.conv_general_dilated`` of NHWC images with HWIO kernels, stride 1, computed on
  2x2 pixel blocks.

  ``[B, H, W, C] (*) [kh, kw, C, F] -> [B, H', W', F]``. The padded input is folded into
  blocks ``[B, H/2, W/2, 4C]`` (space to depth); the kernel becomes the block kernel
  ``[kh//2 + 1, kw//2 + 1, 4C, 4F]`` that maps a block's neighbourhood to the block's 2x2
  outputs (the kernel's taps placed by a constant one-hot map, zeros elsewhere: 1.44x the
  multiply-adds of a 5x5 kernel, 1.78x of a 3x3); one convolution of blocks, then depth to
  space and a crop. Exact up to float summation order. Worth it where the plain
  convolution has few channels: XLA:CPU sends a float32 convolution to its fast library
  (YNNPACK) only with more than 16 input or output channels, and 4C or 4F often are.

  Raises:
    ConfigError: not a 2-D NHWC/HWIO convolution with stride 1, no dilation, one group.
  """
  if (not _is_nhwc_2d(lhs.shape, rhs.shape, dimension_numbers, batch_group_count)
      or tuple(window_strides) != (1, 1) or feature_group_count != 1
      or tuple(lhs_dilation or (1, 1)) != (1, 1) or tuple(rhs_dilation or (1, 1)) != (1, 1)):
    raise ConfigError(f"conv_impl='space_to_depth' computes 2-D NHWC convolutions with stride "
                      f"1, no dilation and one group only (got input {list(lhs.shape)}, kernel "
                      f"{list(rhs.shape)}, strides {tuple(window_strides)}); use "
                      "conv_impl='xla'.")
  (kernel_h, kernel_w, channels, features), batch = rhs.shape, lhs.shape[0]
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], (kernel_h, kernel_w), (1, 1), padding)
  out_h, out_w = [size + lo + hi - k + 1
                  for size, (lo, hi), k in zip(lhs.shape[1:3], padding, (kernel_h, kernel_w))]
  taps_h, taps_w = _block_taps(kernel_h), _block_taps(kernel_w)
  blocks_h, blocks_w = -(-out_h // 2) + len(taps_h) - 1, -(-out_w // 2) + len(taps_w) - 1
  x = lax.pad(lhs, jnp.zeros((), lhs.dtype),
              [(0, 0, 0), (padding[0][0], 2 * blocks_h - lhs.shape[1] - padding[0][0], 0),
               (padding[1][0], 2 * blocks_w - lhs.shape[2] - padding[1][0], 0), (0, 0, 0)])
  x = x.reshape(batch, blocks_h, 2, blocks_w, 2, channels).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(batch, blocks_h, blocks_w, 4 * channels)  # channels ordered (p, q, c)
  kernel = jnp.einsum("mpau,nqbv,uvcf->mnpqcabf", taps_h.astype(rhs.dtype),
                      taps_w.astype(rhs.dtype), rhs)
  kernel = kernel.reshape(len(taps_h), len(taps_w), 4 * channels, 4 * features)
  y = lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_NHWC,
                               precision=precision,
                               preferred_element_type=preferred_element_type)
  rows, cols = y.shape[1:3]
  y = y.reshape(batch, rows, cols, 2, 2, features).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(batch, 2 * rows, 2 * cols, features)[:, :out_h, :out_w]


def auto_conv_impl(lhs_shape, rhs_shape, window_strides=(1, 1), feature_group_count: int = 1,
                   dimension_numbers=_NHWC, batch_group_count: int = 1,
                   dtype=jnp.float32, dilated: bool = False) -> str:
  """The implementation ``conv_impl="auto"`` takes for one convolution: "im2col",
  "space_to_depth" or "xla".

  The arguments are those of ``lax.conv_general_dilated`` (shapes instead of arrays), but
  the dimension numbers default to ``nn.Conv``'s NHWC/HWIO ones; ``dtype`` is the input's,
  ``dilated`` whether the input or the kernel is dilated.

  Off the CPU always "xla" (cuDNN, the TPU's convolution units). On the CPU, the rule that
  ``benchmarks/conv_paths.py`` measured (fwd + bwd, float32 and bfloat16, jaxlib 0.10.2;
  ``benchmarks/RESULTS.md``): im2col for the two kinds of convolution whose gradients XLA:CPU
  computes on its slow generic path (the input gradient is a "full" convolution over mostly
  padding, or an input-dilated one) while im2col makes them dense products:

  * a kernel that spans the whole input (``kh >= H`` and ``kw >= W``, e.g. LeNet-5's C5,
    5x5 on 5x5: 7.8x faster in float32);
  * a 1x1 kernel with a stride (a projection shortcut: 1.4x).

  Space to depth for float32 kernels sliding with stride 1 (no dilation) over an input of
  at most 8 channels into at most 16: the convolutions XLA:CPU leaves on its generic path
  although their 4x-channel block form is eligible for YNNPACK. Measured at batch 128: 2.9x
  (LeNet-5's C1, 1 -> 6, 5x5 at 32x32), 2.1x (C3, 6 -> 16 at 14x14), 1.3-3.0x for 3x3
  kernels on 1-8 channels; not for 16 -> 16 3x3 at 32x32 (0.3x), which stays with XLA.

  Every other shape (wider 3x3 and 5x5 kernels, strided, grouped and depthwise
  convolutions) was as fast or faster with XLA's convolution, so it stays with XLA.
  """
  if jax.default_backend() != "cpu" or feature_group_count != 1 or not _is_nhwc_2d(
      lhs_shape, rhs_shape, dimension_numbers, batch_group_count):
    return "xla"
  (height, width), (kernel_h, kernel_w, channels, features) = lhs_shape[1:3], rhs_shape
  spans_input = kernel_h >= height and kernel_w >= width
  strided_1x1 = kernel_h == kernel_w == 1 and max(window_strides) > 1
  if spans_input or strided_1x1:
    return "im2col"
  few_channels = channels <= 8 and features <= 16 and max(kernel_h, kernel_w) > 1
  if (few_channels and tuple(window_strides) == (1, 1) and not dilated
      and jnp.dtype(dtype) == jnp.float32):
    return "space_to_depth"
  return "xla"


_PLAIN = contextvars.ContextVar("plain_convolutions", default=False)


@contextlib.contextmanager
def plain_convolutions() -> Iterator[None]:
  """Within it, every :func:`conv` traces to XLA's convolution whatever its ``conv_impl``: a
  model's summary reads kernels, strides, receptive fields and multiply-adds off the trace,
  and those are the layer's, not its implementation's (space to depth does 1.44-1.78x the
  multiply-adds on blocks)."""
  token = _PLAIN.set(True)
  try:
    yield
  finally:
    _PLAIN.reset(token)


def _dispatch_conv(lhs, rhs, window_strides, padding, *, conv_impl: str, **options):
  """``lax.conv_general_dilated`` with ``conv_impl`` ("auto" resolved per shape)."""
  if _PLAIN.get():
    conv_impl = "xla"
  elif conv_impl == "auto":
    dilations = [options.get(key) or (1,) for key in ("lhs_dilation", "rhs_dilation")]
    conv_impl = auto_conv_impl(lhs.shape, rhs.shape, window_strides,
                               options.get("feature_group_count", 1),
                               options.get("dimension_numbers"),
                               options.get("batch_group_count", 1), lhs.dtype,
                               dilated=any(d != 1 for pair in dilations for d in pair))
  return _IMPLEMENTATIONS[conv_impl](lhs, rhs, window_strides, padding, **options)


_IMPLEMENTATIONS = {"xla": lax.conv_general_dilated, "im2col": im2col_conv,
                    "space_to_depth": space_to_depth_conv}


_CONV_FUNCTIONS = {impl: functools.partial(_dispatch_conv, conv_impl=impl) for impl in CONV_IMPLS}


def check_conv_impl(conv_impl: str) -> str:
  """Returns ``conv_impl`` if it is one of :data:`CONV_IMPLS`, else raises a ConfigError."""
  if conv_impl not in CONV_IMPLS:
    raise ConfigError(f"Unknown conv_impl {conv_impl!r}; choose one of {', '.join(CONV_IMPLS)} "
                      "(model.conv_impl).")
  return conv_impl


def conv(features: int, kernel_size, strides=1, *, conv_impl: str = "auto", **kwargs) -> nn.Conv:
  """An ``nn.Conv`` computed by ``conv_impl`` ("auto", "xla", "im2col" or "space_to_depth";
  see the module docstring). Parameters, their names and shapes are those of ``nn.Conv``,
  so checkpoints and weight converters do not depend on the choice. ``kwargs`` go to
  ``nn.Conv``."""
  return nn.Conv(features, kernel_size, strides,
                 conv_general_dilated=_CONV_FUNCTIONS[check_conv_impl(conv_impl)], **kwargs)


def batch_norm(train: bool, dtype: Any, **kwargs) -> BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.9 in flax terms, eps 1e-5): the
  ``nn.BatchNorm`` subclass of :mod:`cnn_jax.models.normalization` (its own backward pass).

  Statistics and scale/bias stay float32 even when ``dtype`` is bfloat16.
  """
  kwargs.setdefault("momentum", 0.9)
  kwargs.setdefault("epsilon", 1e-5)
  return BatchNorm(use_running_average=not train, dtype=dtype, param_dtype=jnp.float32,
                   **kwargs)


class ConvBN(nn.Module):
  """Conv -> BatchNorm -> activation, the workhorse block. ``[B,H,W,C] -> [B,H',W',F]``.

  ``padding`` says how many pixels are added (``"SAME"``, ``"VALID"``, an int or per-axis
  ``(before, after)`` pairs, as in ``nn.Conv``); ``padding_mode`` what they hold:
  ``"zeros"``, ``"reflect"`` or ``"replicate"`` (see :mod:`cnn_jax.basics.padding`).
  """
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: Any = "SAME"
  act: str = "relu"
  use_bias: bool = False
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32
  padding_mode: str = "zeros"
  conv_impl: str = "auto"  # "auto", "xla", "im2col" or "space_to_depth" (see conv)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    padding = self.padding
    if check_padding_mode(self.padding_mode) != "zeros":
      pads = [padding_amounts(size, kernel, stride, _axis_padding(padding, axis))
              for axis, (size, kernel, stride)
              in enumerate(zip(x.shape[1:3], self.kernel_size, self.strides))]
      x, padding = pad_images(x, pads, self.padding_mode), "VALID"
    x = conv(self.features, self.kernel_size, self.strides, conv_impl=self.conv_impl,
             padding=padding, use_bias=self.use_bias, dtype=self.dtype, name="conv")(x)
    x = batch_norm(train, self.dtype, epsilon=self.bn_epsilon, name="bn")(x)
    return activation(self.act)(x)


def _axis_padding(padding: Any, axis: int) -> Any:
  """The part of an ``nn.Conv`` padding spec that applies to spatial ``axis``."""
  return padding if isinstance(padding, (str, int)) else padding[axis]


def global_avg_pool(x: jnp.ndarray) -> jnp.ndarray:
  """``[B, H, W, C] -> [B, C]`` mean over space, computed in float32."""
  return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def classifier_output(x: jnp.ndarray) -> jnp.ndarray:
  """Logits are always returned in float32, whatever the compute dtype."""
  return x.astype(jnp.float32)


# He-normal with fan-out, torchvision's init for convolutions.
KAIMING_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
  """``[out_size, in_size]`` averaging weights of PyTorch's adaptive average pooling.

  Output cell ``i`` averages inputs ``floor(i * in / out)`` to ``ceil((i + 1) * in / out)``
  (exclusive), so the cells overlap when ``in`` is not a multiple of ``out`` and repeat
  inputs when ``in < out``.
  """
  weights = np.zeros((out_size, in_size), np.float32)
  for i in range(out_size):
    start = (i * in_size) // out_size
    end = -((-(i + 1) * in_size) // out_size)
    weights[i, start:end] = 1.0 / (end - start)
  return weights


def adaptive_avg_pool(x: jnp.ndarray, output_size: tuple[int, int]) -> jnp.ndarray:
  """PyTorch's ``AdaptiveAvgPool2d``: ``[B, H, W, C] -> [B, oh, ow, C]`` for any H, W >= 1.

  An average over a rectangle is the product of averages over its rows and columns, so the
  pool is two small matrix products with weights fixed at trace time.
  """
  rows = jnp.asarray(_adaptive_pool_matrix(x.shape[1], output_size[0]), x.dtype)
  cols = jnp.asarray(_adaptive_pool_matrix(x.shape[2], output_size[1]), x.dtype)
  return jnp.einsum("bhwc,ih,jw->bijc", x, rows, cols)


def flatten_chw(x: jnp.ndarray) -> jnp.ndarray:
  """``[B, H, W, C] -> [B, C * H * W]`` in PyTorch's channel-major order."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def pooled_classifier(x: jnp.ndarray, features: dict, num_classes: int, *, train: bool,
                      dtype: Any, name: str = "fc", dropout_rate: float = 0.0,
                      kernel_init: Any = None) -> tuple[jnp.ndarray, dict]:
  """The common head: global average pool -> (dropout) -> Dense, inside a compact module.

  ``[B, H, W, C] -> [B, num_classes]`` float32 logits; records ``features["pre_logits"]``
  (``[B, C]``) and returns ``(logits, features)``.
  """
  x = global_avg_pool(x)
  features["pre_logits"] = x
  if dropout_rate:
    x = nn.Dropout(dropout_rate, deterministic=not train)(x)
  init = {} if kernel_init is None else {"kernel_init": kernel_init}
  logits = nn.Dense(num_classes, dtype=dtype, name=name, **init)(x)
  return classifier_output(logits), features


def check_image_size(x: jnp.ndarray, minimum: int, model: str, note: str = "") -> None:
  """Raises a one-line ShapeError unless ``x`` is ``[B, H, W, C]`` with H and W at least
  ``minimum`` (the smallest input ``model``'s downsampling stages accept); ``note`` is
  appended to the message."""
  if x.ndim != 4 or min(x.shape[1:3]) < minimum:
    raise ShapeError(f"{model} takes images of shape [B, H, W, C] with H and W at least "
                     f"{minimum}{note}, got {list(x.shape)}.")
