"""Network in Network (Lin, Chen & Yan 2014), the CIFAR-10 model.

Three MLPconv blocks -- a spatial convolution followed by two 1x1 convolutions (a small
MLP shared across positions), ReLU after each -- and global average pooling as the
classifier: the last block has one output channel per class and there are no dense layers.

  block 1: 5x5 conv 192, 1x1 160, 1x1 96, 3x3/2 max pool, dropout   [B, 32, 32, C] -> 16x16
  block 2: 5x5 conv 192, 1x1 192, 1x1 192, 3x3/2 avg pool, dropout              -> 8x8
  block 3: 3x3 conv 192, 1x1 192, 1x1 num_classes, global average pool -> [B, num_classes]

The pools round up like the original Caffe model (``SAME`` padding; padded cells do not
count in averages), so a 32x32 image gives 16x16 and 8x8 maps. 966,986 parameters for
10 classes and RGB input; ``use_batch_norm`` adds batch norm after every convolution.

Because the last 1x1 convolution is linear per position, it commutes with the global
pool: the head is "1x1 conv -> ReLU -> average", and ``pre_logits`` is the globally
pooled input of that last convolution, ``[B, 192]``.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.models import MODELS
from cnn_jax.models.layers import batch_norm, classifier_output, global_avg_pool


class MLPConv(nn.Module):
  """A ``k x k`` convolution then 1x1 convolutions, each followed by [BatchNorm ->] ReLU.

  ``[B, H, W, C] -> [B, H, W, features[-1]]`` (``SAME`` padding). With ``return_hidden``
  it also returns the input of the last 1x1 convolution.
  """
  features: Sequence[int]
  kernel_size: int
  use_batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, return_hidden: bool = False):
    for i, width in enumerate(self.features):
      hidden = x
      k = self.kernel_size if i == 0 else 1
      x = nn.Conv(width, (k, k), padding="SAME", use_bias=not self.use_batch_norm,
                  dtype=self.dtype, name=f"conv{i + 1}")(x)
      if self.use_batch_norm:
        x = batch_norm(train, self.dtype, name=f"bn{i + 1}")(x)
      x = nn.relu(x)
    return (x, hidden) if return_hidden else x


class NIN(nn.Module):
  """Network in Network. ``[B, H, W, C] -> ([B, num_classes], features)``.

  Features: ``stage1`` .. ``stage3`` (block outputs; ``stage3`` is the per-position class
  map) and ``pre_logits`` ``[B, 192]``.
  """
  num_classes: int = 10
  dropout_rate: float = 0.5
  use_batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    block = lambda widths, k, name: MLPConv(widths, k, self.use_batch_norm, self.dtype, name=name)
    dropout = lambda y, i: nn.Dropout(self.dropout_rate, deterministic=not train,
                                      name=f"dropout{i}")(y)
    x = x.astype(self.dtype)
    x = block((192, 160, 96), 5, "block1")(x, train)
    s1 = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
    x = block((192, 192, 192), 5, "block2")(dropout(s1, 1), train)
    s2 = nn.avg_pool(x, (3, 3), (2, 2), padding="SAME", count_include_pad=False)
    x, hidden = block((192, 192, self.num_classes), 3, "block3")(dropout(s2, 2), train,
                                                                return_hidden=True)
    features = {"stage1": s1, "stage2": s2, "stage3": x, "pre_logits": global_avg_pool(hidden)}
    return classifier_output(global_avg_pool(x)), features


@MODELS.register("nin_cifar", input_shape=(32, 32, 3))
def nin_cifar(**kw) -> NIN:
  return NIN(**kw)
