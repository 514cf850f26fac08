"""GoogLeNet (Inception v1, Szegedy et al. 2014) in torchvision's layout.

Torchvision's GoogLeNet differs from the paper in three ways, all reproduced here:
every conv is followed by batch norm (eps 1e-3, no conv bias), the "5x5" branch of
each Inception module uses a 3x3 kernel, and the stride-2 max pools use ceil mode.
It has 6,624,904 parameters for 1000 classes, 13,004,888 with the two auxiliary
classifiers (``aux_logits=True``). Inputs must be at least 15x15 (what the ceil-mode
pools allow); the heads use global / adaptive average pooling, so any larger size works.

Weight mapping to a torchvision state dict: join the flax module path with ``"."``
and turn every ``"_"`` into ``"."`` (no torchvision name here has an underscore),
so ``params["inception3a"]["branch2_1"]["conv"]["kernel"]`` is
``inception3a.branch2.1.conv.weight``. Leaves: conv ``kernel`` [kh, kw, in, out] is
``weight`` [out, in, kh, kw]; dense ``kernel`` [in, out] is ``weight`` [out, in];
batch-norm ``scale``/``bias`` are ``weight``/``bias`` and ``batch_stats`` ``mean``/``var``
are ``running_mean``/``running_var``. The auxiliary heads flatten their 4x4 maps in
channel-major (C, H, W) order like torch, so ``fc1.weight`` needs only the transpose.

``googlenet_cifar`` (:class:`GoogLeNetCifar`) is the 32x32 layout of kuangliu/pytorch-cifar
(``models/googlenet.py``): a single 3x3 conv (192 channels) as the stem, no pools before
inception3 (which runs at 32x32), 3x3/2 max pools (padding 1) before inception4 and 5, and
modules as in :data:`STAGES` whose "5x5" branch is two 3x3 convolutions, every conv with a
bias and batch norm (eps 1e-5): 6,166,250 parameters for 10 classes, that project's count.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.models import MODELS
from cnn_jax.models.layers import (ConvBN, adaptive_avg_pool, check_image_size,
                                    classifier_output, flatten_chw, pooled_classifier)

MIN_SIZE = 15

# Inception modules per stage: name -> (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj).
STAGES = (
    {"inception3a": (64, 96, 128, 16, 32, 32),
     "inception3b": (128, 128, 192, 32, 96, 64)},
    {"inception4a": (192, 96, 208, 16, 48, 64),
     "inception4b": (160, 112, 224, 24, 64, 64),
     "inception4c": (128, 128, 256, 24, 64, 64),
     "inception4d": (112, 144, 288, 32, 64, 64),
     "inception4e": (256, 160, 320, 32, 128, 128)},
    {"inception5a": (256, 160, 320, 32, 128, 128),
     "inception5b": (384, 192, 384, 48, 128, 128)},
)
# Auxiliary classifiers: the Inception module they read -> their name.
AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}


def max_pool_ceil(x: jnp.ndarray, window: int, stride: int) -> jnp.ndarray:
  """torch ``MaxPool2d(window, stride, ceil_mode=True)``: ``[B, H, W, C] -> [B, H', W', C]``.

  ``H' = ceil((H - window) / stride) + 1`` for ``window >= stride``; the partial last window
  is padded with -inf.
  """
  pads = []
  for size in x.shape[1:3]:
    out = -(-(size - window) // stride) + 1
    pads.append((0, max((out - 1) * stride + window - size, 0)))
  return nn.max_pool(x, (window, window), (stride, stride), padding=pads)


class Inception(nn.Module):
  """An Inception module: four branches concatenated on channels.

  ``[B, H, W, C] -> [B, H, W, ch1x1 + ch3x3 + ch5x5 + pool_proj]``. Branches:
  ``branch1`` 1x1 | ``branch2_0`` 1x1 -> ``branch2_1`` 3x3 |
  ``branch3_0`` 1x1 -> ``branch3_1`` 3x3 (torchvision's "5x5") |
  3x3 stride-1 max pool -> ``branch4_1`` 1x1.
  """
  ch1x1: int
  ch3x3red: int
  ch3x3: int
  ch5x5red: int
  ch5x5: int
  pool_proj: int
  dtype: Any = jnp.float32
  double_3x3: bool = False  # the "5x5" branch as two 3x3 convs (``branch3_2`` the second)
  use_bias: bool = False
  bn_epsilon: float = 1e-3

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    def conv(h, features, kernel, name):
      return ConvBN(features, (kernel, kernel), padding=kernel // 2, use_bias=self.use_bias,
                    bn_epsilon=self.bn_epsilon, dtype=self.dtype, name=name)(h, train)

    b1 = conv(x, self.ch1x1, 1, "branch1")
    b2 = conv(conv(x, self.ch3x3red, 1, "branch2_0"), self.ch3x3, 3, "branch2_1")
    b3 = conv(conv(x, self.ch5x5red, 1, "branch3_0"), self.ch5x5, 3, "branch3_1")
    if self.double_3x3:
      b3 = conv(b3, self.ch5x5, 3, "branch3_2")
    b4 = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
    b4 = conv(b4, self.pool_proj, 1, "branch4_1")
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
  """Auxiliary classifier: ``[B, H, W, C] -> [B, num_classes]`` float32 logits.

  Adaptive average pool to 4x4 -> 1x1 conv (128) -> flatten (C, H, W order)
  -> ``fc1`` (1024) -> ReLU -> dropout -> ``fc2``.
  """
  num_classes: int = 1000
  dropout_rate: float = 0.7
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = adaptive_avg_pool(x, (4, 4))
    x = ConvBN(128, (1, 1), bn_epsilon=1e-3, dtype=self.dtype, name="conv")(x, train)
    x = flatten_chw(x)  # [B, 128 * 4 * 4], torch's order
    x = nn.relu(nn.Dense(1024, dtype=self.dtype, name="fc1")(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return classifier_output(nn.Dense(self.num_classes, dtype=self.dtype, name="fc2")(x))


class GoogLeNet(nn.Module):
  """GoogLeNet. ``[B, H, W, C] -> ([B, num_classes], features)`` with H, W >= 15.

  Features: ``stage1`` conv1 ``[B, H/2, W/2, 64]``, ``stage2`` conv3 ``[B, H/4, W/4, 192]``,
  ``stage3`` inception3b ``[B, H/8, W/8, 480]``, ``stage4`` inception4e
  ``[B, H/16, W/16, 832]``, ``stage5`` inception5b ``[B, H/32, W/32, 1024]`` (sizes
  rounded up), ``pre_logits`` ``[B, 1024]``; with ``aux_logits`` and ``train=True`` also
  ``aux1`` and ``aux2`` (``[B, num_classes]`` float32). The auxiliary heads' parameters
  are created at init whenever ``aux_logits`` is set, whatever ``train`` is.
  """
  num_classes: int = 1000
  aux_logits: bool = False
  dropout_rate: float = 0.2
  aux_dropout_rate: float = 0.7
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    check_image_size(x, MIN_SIZE, "GoogLeNet")

    def conv(h, features, kernel, stride, padding, name):
      return ConvBN(features, (kernel, kernel), (stride, stride), padding, bn_epsilon=1e-3,
                    dtype=self.dtype, name=name)(h, train)

    features = {}
    x = conv(x.astype(self.dtype), 64, 7, 2, 3, "conv1")
    features["stage1"] = x
    x = max_pool_ceil(x, 3, 2)
    x = conv(x, 64, 1, 1, 0, "conv2")
    x = conv(x, 192, 3, 1, 1, "conv3")
    features["stage2"] = x
    x = max_pool_ceil(x, 3, 2)
    with_aux = self.aux_logits and (train or self.is_initializing())
    for stage, modules in enumerate(STAGES, start=3):
      if stage == 4:
        x = max_pool_ceil(x, 3, 2)
      elif stage == 5:
        x = max_pool_ceil(x, 2, 2)
      for name, widths in modules.items():
        x = Inception(*widths, dtype=self.dtype, name=name)(x, train)
        if with_aux and name in AUX_AFTER:
          aux = AUX_AFTER[name]
          features[aux] = InceptionAux(self.num_classes, self.aux_dropout_rate, self.dtype,
                                       name=aux)(x, train)
      features[f"stage{stage}"] = x
    return pooled_classifier(x, features, self.num_classes, train=train, dtype=self.dtype,
                             dropout_rate=self.dropout_rate)


class GoogLeNetCifar(nn.Module):
  """GoogLeNet for 32x32 images. ``[B, H, W, C] -> ([B, num_classes], features)``.

  Features: ``stage1`` the stem ``[B, H, W, 192]``, ``stage2`` inception3b
  ``[B, H, W, 480]``, ``stage3`` inception4e ``[B, H/2, W/2, 832]``, ``stage4`` inception5b
  ``[B, H/4, W/4, 1024]`` and ``pre_logits`` ``[B, 1024]`` (global average pool).
  """
  num_classes: int = 10
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    check_image_size(x, 4, "googlenet_cifar")
    pool = lambda y: nn.max_pool(y, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    x = ConvBN(192, (3, 3), padding=1, use_bias=True, dtype=self.dtype, name="stem")(
        x.astype(self.dtype), train)
    features = {"stage1": x}
    for stage, modules in enumerate(STAGES, start=2):
      if stage > 2:
        x = pool(x)
      for name, widths in modules.items():
        x = Inception(*widths, dtype=self.dtype, double_3x3=True, use_bias=True, bn_epsilon=1e-5,
                      name=name)(x, train)
      features[f"stage{stage}"] = x
    return pooled_classifier(x, features, self.num_classes, train=train, dtype=self.dtype,
                             name="linear")


@MODELS.register("googlenet", input_shape=(224, 224, 3))
def googlenet(**kw) -> GoogLeNet:
  return GoogLeNet(**kw)


@MODELS.register("googlenet_cifar", input_shape=(32, 32, 3))
def googlenet_cifar(**kw) -> GoogLeNetCifar:
  return GoogLeNetCifar(**kw)
