"""Building blocks shared by the model families."""

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from cnn_jax.basics.arithmetic import padding_amounts
from cnn_jax.basics.padding import check_padding_mode, pad_images

ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid, "gelu": nn.gelu,
    "elu": nn.elu, "leaky_relu": nn.leaky_relu, "silu": nn.silu, "identity": lambda x: x,
}


def activation(name: str) -> Callable:
  """Looks up an activation function by name (``relu``, ``tanh``, ``gelu``, ...)."""
  if name not in ACTIVATIONS:
    from cnn_jax.errors import ConfigError
    raise ConfigError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
  return ACTIVATIONS[name]


def batch_norm(train: bool, dtype: Any, **kwargs) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.9 in flax terms, eps 1e-5).

  Statistics and scale/bias stay float32 even when ``dtype`` is bfloat16.
  """
  kwargs.setdefault("momentum", 0.9)
  kwargs.setdefault("epsilon", 1e-5)
  return nn.BatchNorm(use_running_average=not train, dtype=dtype, param_dtype=jnp.float32,
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

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    padding = self.padding
    if check_padding_mode(self.padding_mode) != "zeros":
      pads = [padding_amounts(size, kernel, stride, _axis_padding(padding, axis))
              for axis, (size, kernel, stride)
              in enumerate(zip(x.shape[1:3], self.kernel_size, self.strides))]
      x, padding = pad_images(x, pads, self.padding_mode), "VALID"
    x = nn.Conv(self.features, self.kernel_size, self.strides, padding=padding,
                use_bias=self.use_bias, dtype=self.dtype, name="conv")(x)
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
