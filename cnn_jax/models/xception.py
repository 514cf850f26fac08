"""Xception (Chollet 2017) in the layout of ``keras.applications.Xception``.

Entry flow: two plain convs, then three blocks of separable convs that halve the
resolution with a 3x3/2 max pool and add a strided 1x1 conv + batch norm shortcut.
Middle flow: eight residual blocks of three separable convs at 728 channels. Exit
flow: one more downsampling block and two separable convs up to 2048 channels.
Separable convs are a 3x3 depthwise conv then a 1x1 pointwise conv, both without
bias; every batch norm has eps 1e-3 and Keras's momentum 0.99. 22,855,952 parameters
plus 54,528 batch-norm statistics = Keras's 22,910,480 weights for 1000 classes and
RGB input. Inputs must be at least 71x71 (Keras's limit); the head is global average
pooling, so any larger size works.

Weight mapping to Keras: flax module names are Keras's layer names (``block1_conv1``,
``block1_conv1_bn``, ``block2_sepconv1``, ..., ``predictions``). Keras leaves the four
shortcut convs and their batch norms unnamed (``conv2d``, ``conv2d_1``, ... and
``batch_normalization``, ... in creation order, counted from the model's first one);
here they are ``block{2,3,4,13}_residual`` and ``block{2,3,4,13}_residual_bn``, in that
order. Leaves: conv ``kernel`` as is (both HWIO); a SeparableConv2D's
``depthwise_kernel`` [3, 3, C, 1] is ``<name>/depthwise/kernel`` [3, 3, 1, C] (a
reshape) and its ``pointwise_kernel`` is ``<name>/pointwise/kernel``; batch-norm
``gamma``/``beta`` are ``scale``/``bias`` and ``moving_mean``/``moving_variance`` are
``batch_stats`` ``mean``/``var``.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.models import MODELS
from cnn_jax.models.layers import batch_norm, check_image_size, pooled_classifier

MIN_SIZE = 71

MIDDLE_BLOCKS = tuple(f"block{i}" for i in range(5, 13))


class SeparableConv(nn.Module):
  """Keras ``SeparableConv2D(features, 3, padding="same", use_bias=False)``.

  ``[B, H, W, C] -> [B, H, W, features]``: ``depthwise`` 3x3 conv per channel, then
  ``pointwise`` 1x1 conv.
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    channels = x.shape[-1]
    x = nn.Conv(channels, (3, 3), padding="SAME", feature_group_count=channels, use_bias=False,
                dtype=self.dtype, name="depthwise")(x)
    return nn.Conv(self.features, (1, 1), use_bias=False, dtype=self.dtype, name="pointwise")(x)


class Xception(nn.Module):
  """Xception. ``[B, H, W, C] -> ([B, num_classes], features)`` with H, W >= 71.

  Features: ``stage1`` block1 ``[B, H/2, W/2, 64]``, ``stage2`` block2
  ``[B, H/4, W/4, 128]``, ``stage3`` block3 ``[B, H/8, W/8, 256]``, ``stage4`` block12
  ``[B, H/16, W/16, 728]``, ``stage5`` block14 ``[B, H/32, W/32, 2048]`` (sizes
  approximate: the first convs are unpadded), ``pre_logits`` ``[B, 2048]``.
  ``dropout_rate`` (0 in Keras) applies before ``predictions``.
  """
  num_classes: int = 1000
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    check_image_size(x, MIN_SIZE, "Xception")
    bn = lambda h, name: batch_norm(train, self.dtype, epsilon=1e-3, momentum=0.99, name=name)(h)
    sepconv_bn = lambda h, features, name: bn(
        SeparableConv(features, self.dtype, name=name)(h), f"{name}_bn")

    def downsample_block(h, name, widths):
      residual = nn.Conv(widths[-1], (1, 1), (2, 2), padding="SAME", use_bias=False,
                         dtype=self.dtype, name=f"{name}_residual")(h)
      residual = bn(residual, f"{name}_residual_bn")
      for i, features in enumerate(widths, start=1):
        if name != "block2" or i > 1:  # block2 follows block1's ReLU directly
          h = nn.relu(h)
        h = sepconv_bn(h, features, f"{name}_sepconv{i}")
      return nn.max_pool(h, (3, 3), (2, 2), padding="SAME") + residual

    features = {}
    x = x.astype(self.dtype)
    x = nn.Conv(32, (3, 3), (2, 2), padding="VALID", use_bias=False, dtype=self.dtype,
                name="block1_conv1")(x)
    x = nn.relu(bn(x, "block1_conv1_bn"))
    x = nn.Conv(64, (3, 3), padding="VALID", use_bias=False, dtype=self.dtype,
                name="block1_conv2")(x)
    x = nn.relu(bn(x, "block1_conv2_bn"))
    features["stage1"] = x
    x = downsample_block(x, "block2", (128, 128))
    features["stage2"] = x
    x = downsample_block(x, "block3", (256, 256))
    features["stage3"] = x
    x = downsample_block(x, "block4", (728, 728))
    for name in MIDDLE_BLOCKS:
      h = x
      for i in range(1, 4):
        h = sepconv_bn(nn.relu(h), 728, f"{name}_sepconv{i}")
      x = x + h
    features["stage4"] = x
    x = downsample_block(x, "block13", (728, 1024))
    x = nn.relu(sepconv_bn(x, 1536, "block14_sepconv1"))
    x = nn.relu(sepconv_bn(x, 2048, "block14_sepconv2"))
    features["stage5"] = x
    return pooled_classifier(x, features, self.num_classes, train=train, dtype=self.dtype,
                             name="predictions", dropout_rate=self.dropout_rate)


@MODELS.register("xception", input_shape=(299, 299, 3))
def xception(**kw) -> Xception:
  return Xception(**kw)
