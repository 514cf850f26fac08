"""A configurable plain CNN: blocks of Conv -> BatchNorm -> ReLU -> MaxPool.

Channels start at ``base_channels`` and double per block; the head is either
Flatten -> Dense layers with dropout between them, or global average pooling.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.models import MODELS
from cnn_jax.models.layers import ConvBN, classifier_output, global_avg_pool


class SimpleCNN(nn.Module):
  """``[B, H, W, C] -> ([B, num_classes], features)``; H and W must survive the pools."""
  num_classes: int = 10
  base_channels: int = 32
  num_blocks: int = 3
  convs_per_block: int = 1
  dense_units: Sequence[int] = (128,)
  dropout_rate: float = 0.5
  head: str = "flatten"  # "flatten" or "gap" (global average pooling)
  dtype: Any = jnp.float32
  padding_mode: str = "zeros"  # "zeros", "reflect" or "replicate" (cnn_jax.basics.padding)
  conv_impl: str = "auto"  # "auto", "xla", "im2col", "space_to_depth" (layers.conv)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    if self.head not in ("flatten", "gap"):
      raise ConfigError(f"SimpleCNN head must be 'flatten' or 'gap', got {self.head!r}.")
    features = {}
    x = x.astype(self.dtype)
    for b in range(self.num_blocks):
      for c in range(self.convs_per_block):
        x = ConvBN(self.base_channels * 2**b, dtype=self.dtype, padding_mode=self.padding_mode,
                   conv_impl=self.conv_impl, name=f"block{b + 1}_conv{c + 1}")(x, train)
      x = nn.max_pool(x, (2, 2), (2, 2), padding="SAME")
      features[f"stage{b + 1}"] = x
    if self.head == "gap":
      x = global_avg_pool(x)
    else:
      x = x.reshape(x.shape[0], -1)
    for i, units in enumerate(self.dense_units):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = nn.relu(nn.Dense(units, dtype=self.dtype, name=f"dense{i + 1}")(x))
    features["pre_logits"] = x
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="output")(x)
    return classifier_output(logits), features


@MODELS.register("simple_cnn", input_shape=(28, 28, 1))
def simple_cnn(**kw) -> SimpleCNN:
  return SimpleCNN(**kw)
