"""Inception v3 (Szegedy et al. 2015) in torchvision's and in Keras's layout.

Both variants share every block; they differ only in options (``KERAS`` below):

* ``inception_v3``: torchvision's ``inception_v3``. Batch norm with scale (eps 1e-3,
  torch momentum 0.1), 3x3 average pools that count the zero padding, dropout 0.5
  before ``fc``, and the auxiliary classifier ``AuxLogits`` on Mixed_6e
  (``aux_logits=True``). 27,161,264 parameters for 1000 classes (23,834,568 without
  the auxiliary classifier).
* ``keras_inception_v3``: ``keras.applications.InceptionV3``. Batch norm without scale
  (``scale=False``, eps 1e-3, Keras momentum 0.99), average pools that skip the
  padding, no dropout, no auxiliary classifier. 23,817,352 parameters plus 34,432
  batch-norm statistics = Keras's 23,851,784 weights for 1000 classes.

Inputs must be at least 75x75 (Mixed_7a would get an empty map below that); the
auxiliary classifier needs at least 299x299, so it must be turned off
(``aux_logits=False``) to train or init at smaller sizes.

Weight mapping:

* torchvision: flax module names are torchvision's attribute names, so a state-dict
  key is the flax path joined with ``"."``: ``params["Mixed_5b"]["branch1x1"]["conv"]
  ["kernel"]`` is ``Mixed_5b.branch1x1.conv.weight``. Leaves: conv ``kernel``
  [kh, kw, in, out] is ``weight`` [out, in, kh, kw]; dense ``kernel`` [in, out] is
  ``weight`` [out, in]; batch-norm ``scale``/``bias`` are ``weight``/``bias`` and
  ``batch_stats`` ``mean``/``var`` are ``running_mean``/``running_var``.
* Keras: its conv layers are auto-named ``conv2d``, ``conv2d_1``, ... and their batch
  norms ``batch_normalization``, ``batch_normalization_1``, ... in creation order
  (count from the model's first one: Keras keeps counting across models in a session).
  The N-th of them is the N-th ``BasicConv2d`` in the order the forward pass calls
  them, which is the order of the code: the stem, then Mixed_5b ... Mixed_7c, and in
  each block the branches in the order its docstring lists them (torchvision's
  attribute order, which is also Keras's). Sorting the flax paths gives the same order
  except in Mixed_5b-5d, where Keras creates ``branch5x5_1``, ``branch5x5_2`` before
  ``branch3x3dbl_1..3``. Leaves: ``kernel`` as is (both HWIO), ``beta`` is ``bn/bias``,
  ``moving_mean``/``moving_variance`` are ``mean``/``var``; the Dense ``predictions``
  is ``fc``.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.models import MODELS
from cnn_jax.models.layers import (batch_norm, check_image_size, classifier_output,
                                    global_avg_pool, pooled_classifier)

MIN_SIZE = 75
MIN_SIZE_AUX = 299

ModuleDef = Any


class BasicConv2d(nn.Module):
  """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU. ``[B, H, W, C] -> [B, H', W', features]``.

  Submodules ``conv`` and ``bn``; ``bn_scale=False`` drops the batch-norm scale (Keras).
  """
  features: int
  kernel_size: tuple[int, int] = (1, 1)
  strides: tuple[int, int] = (1, 1)
  padding: str = "SAME"
  bn_scale: bool = True
  bn_momentum: float = 0.9
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = nn.Conv(self.features, self.kernel_size, self.strides, padding=self.padding,
                use_bias=False, dtype=self.dtype, name="conv")(x)
    x = batch_norm(train, self.dtype, epsilon=1e-3, momentum=self.bn_momentum,
                   use_scale=self.bn_scale, name="bn")(x)
    return nn.relu(x)


def avg_pool_3x3(x: jnp.ndarray, include_pad: bool) -> jnp.ndarray:
  """3x3 stride-1 average pool with one pixel of zero padding; ``include_pad=False``
  averages only the pixels inside the image (Keras), ``True`` always divides by 9 (torch)."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=include_pad)


def max_pool_3x3_s2(x: jnp.ndarray) -> jnp.ndarray:
  """3x3 stride-2 max pool without padding: ``[B, H, W, C] -> [B, (H-3)//2+1, (W-3)//2+1, C]``."""
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
  """35x35 block (Mixed_5b-5d): ``[B, H, W, C] -> [B, H, W, 224 + pool_features]``.

  Branches: ``branch1x1`` | ``branch5x5_1`` 1x1 -> ``branch5x5_2`` 5x5 |
  ``branch3x3dbl_1`` 1x1 -> ``_2`` 3x3 -> ``_3`` 3x3 | avg pool -> ``branch_pool`` 1x1.
  """
  pool_features: int
  conv: ModuleDef
  pool_include_pad: bool

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    conv = lambda h, f, k, name: self.conv(f, k, name=name)(h, train)
    b1 = conv(x, 64, (1, 1), "branch1x1")
    b5 = conv(x, 48, (1, 1), "branch5x5_1")
    b5 = conv(b5, 64, (5, 5), "branch5x5_2")
    b3 = conv(x, 64, (1, 1), "branch3x3dbl_1")
    b3 = conv(b3, 96, (3, 3), "branch3x3dbl_2")
    b3 = conv(b3, 96, (3, 3), "branch3x3dbl_3")
    bp = conv(avg_pool_3x3(x, self.pool_include_pad), self.pool_features, (1, 1), "branch_pool")
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Grid reduction 35 -> 17 (Mixed_6a): ``[B, H, W, C] -> [B, (H-3)//2+1, ., 480 + C]``.

  Branches: ``branch3x3`` 3x3/2 | ``branch3x3dbl_1`` 1x1 -> ``_2`` 3x3 -> ``_3`` 3x3/2 |
  3x3/2 max pool.
  """
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    conv = lambda h, f, k, name, **kw: self.conv(f, k, name=name, **kw)(h, train)
    b3 = conv(x, 384, (3, 3), "branch3x3", strides=(2, 2), padding="VALID")
    bd = conv(x, 64, (1, 1), "branch3x3dbl_1")
    bd = conv(bd, 96, (3, 3), "branch3x3dbl_2")
    bd = conv(bd, 96, (3, 3), "branch3x3dbl_3", strides=(2, 2), padding="VALID")
    return jnp.concatenate([b3, bd, max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  """17x17 block with factorized 7x7 convs (Mixed_6b-6e): ``[B, H, W, C] -> [B, H, W, 768]``.

  Branches: ``branch1x1`` | ``branch7x7_1`` 1x1 -> ``_2`` 1x7 -> ``_3`` 7x1 |
  ``branch7x7dbl_1`` 1x1 -> ``_2`` 7x1 -> ``_3`` 1x7 -> ``_4`` 7x1 -> ``_5`` 1x7 |
  avg pool -> ``branch_pool`` 1x1.
  """
  channels_7x7: int
  conv: ModuleDef
  pool_include_pad: bool

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    conv = lambda h, f, k, name: self.conv(f, k, name=name)(h, train)
    c7 = self.channels_7x7
    b1 = conv(x, 192, (1, 1), "branch1x1")
    b7 = conv(x, c7, (1, 1), "branch7x7_1")
    b7 = conv(b7, c7, (1, 7), "branch7x7_2")
    b7 = conv(b7, 192, (7, 1), "branch7x7_3")
    bd = conv(x, c7, (1, 1), "branch7x7dbl_1")
    bd = conv(bd, c7, (7, 1), "branch7x7dbl_2")
    bd = conv(bd, c7, (1, 7), "branch7x7dbl_3")
    bd = conv(bd, c7, (7, 1), "branch7x7dbl_4")
    bd = conv(bd, 192, (1, 7), "branch7x7dbl_5")
    bp = conv(avg_pool_3x3(x, self.pool_include_pad), 192, (1, 1), "branch_pool")
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Grid reduction 17 -> 8 (Mixed_7a): ``[B, H, W, C] -> [B, (H-3)//2+1, ., 512 + C]``.

  Branches: ``branch3x3_1`` 1x1 -> ``_2`` 3x3/2 |
  ``branch7x7x3_1`` 1x1 -> ``_2`` 1x7 -> ``_3`` 7x1 -> ``_4`` 3x3/2 | 3x3/2 max pool.
  """
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    conv = lambda h, f, k, name, **kw: self.conv(f, k, name=name, **kw)(h, train)
    b3 = conv(x, 192, (1, 1), "branch3x3_1")
    b3 = conv(b3, 320, (3, 3), "branch3x3_2", strides=(2, 2), padding="VALID")
    b7 = conv(x, 192, (1, 1), "branch7x7x3_1")
    b7 = conv(b7, 192, (1, 7), "branch7x7x3_2")
    b7 = conv(b7, 192, (7, 1), "branch7x7x3_3")
    b7 = conv(b7, 192, (3, 3), "branch7x7x3_4", strides=(2, 2), padding="VALID")
    return jnp.concatenate([b3, b7, max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  """8x8 block with split 1x3/3x1 outputs (Mixed_7b, 7c): ``[B, H, W, C] -> [B, H, W, 2048]``.

  Branches: ``branch1x1`` | ``branch3x3_1`` 1x1 -> (``_2a`` 1x3, ``_2b`` 3x1) |
  ``branch3x3dbl_1`` 1x1 -> ``_2`` 3x3 -> (``_3a`` 1x3, ``_3b`` 3x1) |
  avg pool -> ``branch_pool`` 1x1.
  """
  conv: ModuleDef
  pool_include_pad: bool

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    conv = lambda h, f, k, name: self.conv(f, k, name=name)(h, train)
    b1 = conv(x, 320, (1, 1), "branch1x1")
    b3 = conv(x, 384, (1, 1), "branch3x3_1")
    b3 = [conv(b3, 384, (1, 3), "branch3x3_2a"), conv(b3, 384, (3, 1), "branch3x3_2b")]
    bd = conv(x, 448, (1, 1), "branch3x3dbl_1")
    bd = conv(bd, 384, (3, 3), "branch3x3dbl_2")
    bd = [conv(bd, 384, (1, 3), "branch3x3dbl_3a"), conv(bd, 384, (3, 1), "branch3x3dbl_3b")]
    bp = conv(avg_pool_3x3(x, self.pool_include_pad), 192, (1, 1), "branch_pool")
    return jnp.concatenate([b1, *b3, *bd, bp], axis=-1)


class InceptionAux(nn.Module):
  """Auxiliary classifier on Mixed_6e: ``[B, >=17, >=17, C] -> [B, num_classes]`` float32.

  5x5/3 average pool -> ``conv0`` 1x1 (128) -> ``conv1`` 5x5 valid (768) -> global
  average pool -> ``fc``.
  """
  num_classes: int
  conv: ModuleDef
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = nn.avg_pool(x, (5, 5), (3, 3))
    x = self.conv(128, (1, 1), name="conv0")(x, train)
    x = self.conv(768, (5, 5), padding="VALID", name="conv1")(x, train)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(global_avg_pool(x))
    return classifier_output(x)


class InceptionV3(nn.Module):
  """Inception v3. ``[B, H, W, C] -> ([B, num_classes], features)`` with H, W >= 75.

  Features: ``stage1`` Conv2d_2b_3x3 ``[B, H/2, W/2, 64]``, ``stage2`` Conv2d_4a_3x3
  ``[B, H/4, W/4, 192]``, ``stage3`` Mixed_5d ``[B, H/8, W/8, 288]``, ``stage4``
  Mixed_6e ``[B, H/16, W/16, 768]``, ``stage5`` Mixed_7c ``[B, H/32, W/32, 2048]``
  (sizes approximate: the reductions are unpadded), ``pre_logits`` ``[B, 2048]``;
  with ``aux_logits`` and ``train=True`` also ``aux`` (``[B, num_classes]`` float32).
  The auxiliary head's parameters are created at init whenever ``aux_logits`` is set.
  """
  num_classes: int = 1000
  aux_logits: bool = True
  dropout_rate: float = 0.5
  bn_scale: bool = True
  bn_momentum: float = 0.9
  pool_include_pad: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    with_aux = self.aux_logits and (train or self.is_initializing())
    min_size = MIN_SIZE_AUX if with_aux else MIN_SIZE
    check_image_size(x, min_size, "Inception v3",
                     " (the auxiliary classifier needs 299x299 in training and at init; pass "
                     "aux_logits=False for smaller images)" if with_aux else "")
    conv = functools.partial(BasicConv2d, bn_scale=self.bn_scale, bn_momentum=self.bn_momentum,
                             dtype=self.dtype)
    pad = self.pool_include_pad
    features = {}
    x = x.astype(self.dtype)
    x = conv(32, (3, 3), (2, 2), "VALID", name="Conv2d_1a_3x3")(x, train)
    x = conv(32, (3, 3), padding="VALID", name="Conv2d_2a_3x3")(x, train)
    x = conv(64, (3, 3), name="Conv2d_2b_3x3")(x, train)
    features["stage1"] = x
    x = conv(80, (1, 1), padding="VALID", name="Conv2d_3b_1x1")(max_pool_3x3_s2(x), train)
    x = conv(192, (3, 3), padding="VALID", name="Conv2d_4a_3x3")(x, train)
    features["stage2"] = x
    x = max_pool_3x3_s2(x)
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
      x = InceptionA(pool_features, conv, pad, name=name)(x, train)
    features["stage3"] = x
    x = InceptionB(conv, name="Mixed_6a")(x, train)
    for name, channels_7x7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                               ("Mixed_6e", 192)):
      x = InceptionC(channels_7x7, conv, pad, name=name)(x, train)
    features["stage4"] = x
    if with_aux:
      features["aux"] = InceptionAux(self.num_classes, conv, self.dtype, name="AuxLogits")(
          x, train)
    x = InceptionD(conv, name="Mixed_7a")(x, train)
    x = InceptionE(conv, pad, name="Mixed_7b")(x, train)
    x = InceptionE(conv, pad, name="Mixed_7c")(x, train)
    features["stage5"] = x
    return pooled_classifier(x, features, self.num_classes, train=train, dtype=self.dtype,
                             dropout_rate=self.dropout_rate)


# keras.applications.InceptionV3: no batch-norm scale, Keras's momentum, pools that skip
# the padding, no dropout, no auxiliary classifier.
KERAS = dict(aux_logits=False, dropout_rate=0.0, bn_scale=False, bn_momentum=0.99,
             pool_include_pad=False)


@MODELS.register("inception_v3", input_shape=(299, 299, 3))
def inception_v3(**kw) -> InceptionV3:
  return InceptionV3(**kw)


@MODELS.register("keras_inception_v3", input_shape=(299, 299, 3))
def keras_inception_v3(**kw) -> InceptionV3:
  return InceptionV3(**{**KERAS, **kw})
