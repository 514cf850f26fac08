"""Building blocks shared by the model families."""

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

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
  """Conv -> BatchNorm -> activation, the workhorse block. ``[B,H,W,C] -> [B,H',W',F]``."""
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: Any = "SAME"
  act: str = "relu"
  use_bias: bool = False
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = nn.Conv(self.features, self.kernel_size, self.strides, padding=self.padding,
                use_bias=self.use_bias, dtype=self.dtype, name="conv")(x)
    x = batch_norm(train, self.dtype, epsilon=self.bn_epsilon, name="bn")(x)
    return activation(self.act)(x)


def global_avg_pool(x: jnp.ndarray) -> jnp.ndarray:
  """``[B, H, W, C] -> [B, C]`` mean over space, computed in float32."""
  return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def classifier_output(x: jnp.ndarray) -> jnp.ndarray:
  """Logits are always returned in float32, whatever the compute dtype."""
  return x.astype(jnp.float32)
