"""LeNet-5 (LeCun et al. 1998), as published: 32x32 input, C1-S2-C3-S4-C5-F6-output.

With full C3 connectivity it has 61,706 parameters for 10 classes and one input channel.
Subsampling layers are average pools (the paper's trainable subsampling coefficients
are omitted, as in every modern reimplementation).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ShapeError
from cnn_jax.models import MODELS
from cnn_jax.models.layers import activation, classifier_output, conv


class LeNet5(nn.Module):
  """LeNet-5. ``[B, 32, 32, C] -> ([B, num_classes], features)``."""
  num_classes: int = 10
  act: str = "tanh"
  pool: str = "avg"  # "avg" as published, or "max"
  dtype: Any = jnp.float32
  conv_impl: str = "auto"  # "auto", "xla", "im2col", "space_to_depth" (layers.conv)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    del train  # no dropout or batch norm in LeNet-5
    if x.ndim != 4 or x.shape[1:3] != (32, 32):
      raise ShapeError(
          f"LeNet-5 takes images of shape [B, 32, 32, C], got {list(x.shape)}. "
          "Set dataset.image_size=32 (28x28 MNIST is padded or resized to 32x32).")
    act = activation(self.act)
    pool = nn.avg_pool if self.pool == "avg" else nn.max_pool
    conv5x5 = lambda f, name: conv(f, (5, 5), conv_impl=self.conv_impl, padding="VALID",
                                   dtype=self.dtype, name=name)
    x = x.astype(self.dtype)
    x = pool(act(conv5x5(6, "c1")(x)), (2, 2), (2, 2))      # [B, 14, 14, 6]
    s1 = x
    x = pool(act(conv5x5(16, "c3")(x)), (2, 2), (2, 2))     # [B, 5, 5, 16]
    s2 = x
    x = act(conv5x5(120, "c5")(x)).reshape(x.shape[0], -1)  # [B, 120]
    x = act(nn.Dense(84, dtype=self.dtype, name="f6")(x))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="output")(x)
    return classifier_output(logits), {"stage1": s1, "stage2": s2, "pre_logits": x}


@MODELS.register("lenet5", input_shape=(32, 32, 1))
def lenet5(**kw) -> LeNet5:
  return LeNet5(**kw)
