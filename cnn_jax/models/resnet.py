"""ResNet (He et al. 2016) for ImageNet: torchvision's v1.5 layout and Keras' v1 layout.

One :class:`ResNet` module covers both references (``variant=``):

* ``"torchvision"`` (``resnet18`` .. ``resnet152``): convolutions without bias, batch-norm
  epsilon 1e-5, and in the bottleneck the stride sits in the 3x3 convolution ("v1.5").
  ResNet-18 has 11,689,512 parameters, ResNet-50 25,557,032 (1000 classes, RGB).
* ``"keras"`` (``keras_resnet50``, ``keras_resnet101``, ``keras_resnet152``, as
  ``keras.applications``): a bias in every convolution, epsilon 1.001e-5, and the stride in
  the first 1x1 convolution of the bottleneck (the original v1). Keras reports 25,636,712
  weights for ResNet50 and 44,707,176 for ResNet101; those totals include the batch-norm
  moving statistics (``batch_stats`` here).

Both stems are a 7x7/2 convolution with 3 pixels of zero padding, batch norm, ReLU and a
3x3/2 max pool with 1 pixel of padding (Keras pads with zeros, torchvision with -inf; after
a ReLU the maxima are the same). Every 3x3 convolution pads 1 pixel on each side, as both
references do -- flax's ``"SAME"`` would pad strided convolutions asymmetrically. Any input
size works; the head is a global average pool and one dense layer.

Convolutions are initialized as in each reference: He-normal with fan-out (torchvision),
Glorot-uniform (Keras); the classifier is LeCun-normal (torchvision) or Glorot-uniform.
``zero_init_residual`` starts the last batch norm of every residual branch at zero scale,
so each block begins as the identity (Goyal et al. 2017).

Parameter naming (for weight converters)
----------------------------------------
Module paths follow torchvision's state-dict keys: ``conv1``, ``bn1``, ``layer{S}_{B}``
(stage ``S`` = 1..4, block ``B`` = 0..), and inside a block ``conv{K}``/``bn{K}``
(``K`` = 1..3) and ``downsample_0`` (1x1 conv) / ``downsample_1`` (its batch norm); ``fc``.

* torchvision: in a key such as ``layer1.0.downsample.0.weight``, replace every ``.<n>``
  (a dot before a number) with ``_<n>`` and split on the remaining dots: the path is
  ``layer1_0/downsample_0`` and the last part names the tensor. ``weight`` becomes
  ``kernel`` (conv ``[O, I, kh, kw] -> [kh, kw, I, O]``, linear transposed) or, in a batch
  norm, ``scale``; ``bias`` stays; ``running_mean``/``running_var`` go to
  ``batch_stats`` as ``mean``/``var``; ``num_batches_tracked`` is dropped. The same rule
  serves :mod:`cnn_jax.models.alexnet`, :mod:`cnn_jax.models.vgg` and
  :mod:`cnn_jax.models.cifar_resnet`.
* Keras: ``conv1_conv``/``conv1_bn`` are ``conv1``/``bn1``; ``conv{S+1}_block{B+1}_{K}_conv``
  and ``..._{K}_bn`` are ``layer{S}_{B}/conv{K}`` and ``bn{K}`` for ``K`` = 1..3, with
  ``K`` = 0 (the shortcut) giving ``downsample_0``/``downsample_1``; ``predictions`` is
  ``fc`` (Keras applies a softmax there; ``fc`` returns logits). Kernels are already
  ``[kh, kw, I, O]``; ``gamma``/``beta``/``moving_mean``/``moving_variance`` are
  ``scale``/``bias``/``mean``/``var``.
"""

import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.models import MODELS
from cnn_jax.models.layers import KAIMING_FAN_OUT, batch_norm, pooled_classifier



class Variant(NamedTuple):
  """What differs between the torchvision and Keras ResNets."""
  use_bias: bool  # in the convolutions
  bn_epsilon: float
  conv_init: Callable
  dense_init: Callable
  stride_in_1x1: bool  # bottleneck stride in the first 1x1 (v1) instead of the 3x3 (v1.5)


VARIANTS = {
    "torchvision": Variant(False, 1e-5, KAIMING_FAN_OUT, nn.initializers.lecun_normal(), False),
    "keras": Variant(True, 1.001e-5, nn.initializers.glorot_uniform(),
                     nn.initializers.glorot_uniform(), True),
}


class _Block(nn.Module):
  """Fields and helpers shared by the residual blocks. ``[B, H, W, C] -> [B, H/s, W/s, F]``.

  ``shortcut`` is used when the block changes shape: ``"projection"`` is a 1x1 strided
  convolution and batch norm (torchvision's ``downsample``, the paper's option B);
  ``"pad"`` subsamples and zero-pads the new channels (option A, parameter-free).
  """
  features: int  # width of the residual branch (a bottleneck outputs 4x as many channels)
  strides: int = 1
  shortcut: str = "projection"
  use_bias: bool = False
  bn_epsilon: float = 1e-5
  kernel_init: Callable = KAIMING_FAN_OUT
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  def conv(self, features: int, kernel: int, strides: int, name: str) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), (strides, strides), padding=((pad, pad), (pad, pad)),
                   use_bias=self.use_bias, kernel_init=self.kernel_init, dtype=self.dtype,
                   name=name)

  def bn(self, train: bool, name: str, last: bool = False) -> nn.BatchNorm:
    zero = last and self.zero_init_residual
    return batch_norm(train, self.dtype, epsilon=self.bn_epsilon, name=name,
                      scale_init=nn.initializers.zeros if zero else nn.initializers.ones)

  def add_shortcut(self, x: jnp.ndarray, residual: jnp.ndarray, train: bool) -> jnp.ndarray:
    """ReLU(residual + shortcut(x)), the shortcut matching the residual's shape."""
    out_features = residual.shape[-1]
    if self.strides != 1 or x.shape[-1] != out_features:
      if self.shortcut == "projection":
        x = self.conv(out_features, 1, self.strides, "downsample_0")(x)
        x = self.bn(train, "downsample_1")(x)
      elif self.shortcut == "pad":
        x = x[:, ::self.strides, ::self.strides, :]
        extra = out_features - x.shape[-1]
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
      else:
        raise ConfigError(f"ResNet shortcut must be 'projection' or 'pad', got {self.shortcut!r}.")
    return nn.relu(residual + x)


class BasicBlock(_Block):
  """Two 3x3 convolutions, the first one strided."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    y = nn.relu(self.bn(train, "bn1")(self.conv(self.features, 3, self.strides, "conv1")(x)))
    y = self.bn(train, "bn2", last=True)(self.conv(self.features, 3, 1, "conv2")(y))
    return self.add_shortcut(x, y, train)


class Bottleneck(_Block):
  """1x1 reduce, 3x3, 1x1 expand (x4); the stride in the 3x3 (v1.5) or the first 1x1 (v1)."""
  stride_in_1x1: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
    y = nn.relu(self.bn(train, "bn1")(self.conv(self.features, 1, s1, "conv1")(x)))
    y = nn.relu(self.bn(train, "bn2")(self.conv(self.features, 3, s3, "conv2")(y)))
    y = self.bn(train, "bn3", last=True)(self.conv(self.features * 4, 1, 1, "conv3")(y))
    return self.add_shortcut(x, y, train)


class ResNet(nn.Module):
  """ResNet. ``[B, H, W, C] -> ([B, num_classes], features)``.

  Features: ``stage1`` .. ``stage4`` (``[B, H/4, W/4, 64e]`` .. ``[B, H/32, W/32, 512e]``,
  ``e`` = 1 for basic blocks, 4 for bottlenecks) and ``pre_logits`` ``[B, 512e]``.
  """
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: str = "basic"  # "basic" or "bottleneck"
  variant: str = "torchvision"  # or "keras"; see VARIANTS
  num_classes: int = 1000
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    if self.variant not in VARIANTS:
      raise ConfigError(f"ResNet variant must be one of {sorted(VARIANTS)}, got {self.variant!r}.")
    if self.block not in ("basic", "bottleneck"):
      raise ConfigError(f"ResNet block must be 'basic' or 'bottleneck', got {self.block!r}.")
    v = VARIANTS[self.variant]
    block_class = (BasicBlock if self.block == "basic" else
                   functools.partial(Bottleneck, stride_in_1x1=v.stride_in_1x1))
    block = functools.partial(
        block_class, use_bias=v.use_bias, bn_epsilon=v.bn_epsilon, kernel_init=v.conv_init,
        zero_init_residual=self.zero_init_residual, dtype=self.dtype)

    x = x.astype(self.dtype)
    x = nn.Conv(64, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=v.use_bias,
                kernel_init=v.conv_init, dtype=self.dtype, name="conv1")(x)
    x = batch_norm(train, self.dtype, epsilon=v.bn_epsilon, name="bn1")(x)
    x = nn.max_pool(nn.relu(x), (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    features = {}
    for s, num_blocks in enumerate(self.stage_sizes):
      for b in range(num_blocks):
        x = block(64 * 2**s, 2 if s > 0 and b == 0 else 1, name=f"layer{s + 1}_{b}")(x, train)
      features[f"stage{s + 1}"] = x
    return pooled_classifier(x, features, self.num_classes, train=train, dtype=self.dtype,
                             kernel_init=v.dense_init)


@MODELS.register("resnet18", input_shape=(224, 224, 3))
def resnet18(**kw) -> ResNet:
  return ResNet(stage_sizes=(2, 2, 2, 2), block="basic", **kw)


@MODELS.register("resnet34", input_shape=(224, 224, 3))
def resnet34(**kw) -> ResNet:
  return ResNet(stage_sizes=(3, 4, 6, 3), block="basic", **kw)


@MODELS.register("resnet50", input_shape=(224, 224, 3))
def resnet50(**kw) -> ResNet:
  return ResNet(stage_sizes=(3, 4, 6, 3), block="bottleneck", **kw)


@MODELS.register("resnet101", input_shape=(224, 224, 3))
def resnet101(**kw) -> ResNet:
  return ResNet(stage_sizes=(3, 4, 23, 3), block="bottleneck", **kw)


@MODELS.register("resnet152", input_shape=(224, 224, 3))
def resnet152(**kw) -> ResNet:
  return ResNet(stage_sizes=(3, 8, 36, 3), block="bottleneck", **kw)


@MODELS.register("keras_resnet50", input_shape=(224, 224, 3))
def keras_resnet50(**kw) -> ResNet:
  return resnet50(variant="keras", **kw)


@MODELS.register("keras_resnet101", input_shape=(224, 224, 3))
def keras_resnet101(**kw) -> ResNet:
  return resnet101(variant="keras", **kw)


@MODELS.register("keras_resnet152", input_shape=(224, 224, 3))
def keras_resnet152(**kw) -> ResNet:
  return resnet152(variant="keras", **kw)
