"""VGG (Simonyan & Zisserman 2015), configurations A, B, D, E, in torchvision's layout.

Five stages of 3x3 convolutions (64, 128, 256, 512, 512 channels, each with a bias), each
stage ending in a 2x2/2 max pool; an adaptive average pool to 7x7; a 4096-4096 classifier
with dropout. The ``*_bn`` variants add batch norm after every convolution. Parameter
counts for 1000 classes and RGB input: VGG-11 132,863,336, VGG-13 133,047,848, VGG-16
138,357,544, VGG-19 143,667,240 (the ``_bn`` variants add 2 per channel of every
convolution). Inputs must be at least 32x32; a final map smaller than 7x7 is spread over
the 7x7 grid as in torchvision.

Layers are named after torchvision's ``nn.Sequential`` indices (``features_0``,
``features_1`` ..., ``classifier_0``, ``classifier_3``, ``classifier_6``), so a state-dict
key maps to a flax path by replacing ``.<n>`` with ``_<n>`` (see :mod:`cnn_jax.models.resnet`
for the full rule). The flatten follows torchvision's ``(C, H, W)`` order.

Initialization follows torchvision: He-normal (fan-out) convolutions, N(0, 0.01) dense
kernels, zero biases.

The CIFAR variants ``vgg11_bn_cifar`` .. ``vgg19_bn_cifar`` (``head="linear"``) are the layout
of kuangliu/pytorch-cifar (``models/vgg.py``): the same batch-normed convolutions, whose five
pools take a 32x32 image to 1x1x512, then a single dense layer (no 4096-wide classifier).
Parameter counts for 10 classes and RGB input, equal to that project's: VGG-11 9,231,114,
VGG-13 9,416,010, VGG-16 14,728,266, VGG-19 20,040,522; it reports 92.64% CIFAR-10 test
accuracy for VGG-16.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.models import MODELS
from cnn_jax.models.layers import (KAIMING_FAN_OUT, adaptive_avg_pool, batch_norm,
                                    check_image_size, classifier_output, flatten_chw,
                                    pooled_classifier)


STAGE_WIDTHS = (64, 128, 256, 512, 512)


class VGG(nn.Module):
  """VGG. ``[B, H, W, C] (H, W >= 32) -> ([B, num_classes], features)``.

  Features: ``stage1`` .. ``stage5`` (after each max pool) and ``pre_logits``
  ``[B, dense_units]`` (``[B, 512]`` with the linear head).
  """
  convs_per_stage: Sequence[int] = (2, 2, 3, 3, 3)  # VGG-16
  use_batch_norm: bool = False
  num_classes: int = 1000
  dense_units: int = 4096  # width of the two hidden classifier layers (often 512 on CIFAR)
  dropout_rate: float = 0.5
  head: str = "mlp"  # "mlp": torchvision's 7x7 pool and 4096-4096 classifier; "linear": CIFAR's
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    if self.head not in ("mlp", "linear"):
      raise ConfigError(f"VGG head must be 'mlp' or 'linear', got {self.head!r}.")
    check_image_size(x, 32, "VGG")
    features = {}
    index = 0  # position in torchvision's `features` Sequential
    x = x.astype(self.dtype)
    for stage, (width, num_convs) in enumerate(zip(STAGE_WIDTHS, self.convs_per_stage)):
      for _ in range(num_convs):
        x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), kernel_init=KAIMING_FAN_OUT,
                    dtype=self.dtype, name=f"features_{index}")(x)
        if self.use_batch_norm:
          x = batch_norm(train, self.dtype, name=f"features_{index + 1}")(x)
        x = nn.relu(x)
        index += 3 if self.use_batch_norm else 2
      x = nn.max_pool(x, (2, 2), (2, 2))
      index += 1
      features[f"stage{stage + 1}"] = x
    if self.head == "linear":  # the final map is 1x1 for 32x32 input; larger ones are averaged
      return pooled_classifier(x, features, self.num_classes, train=train, dtype=self.dtype,
                               name="classifier")
    x = flatten_chw(adaptive_avg_pool(x, (7, 7)))
    dense = lambda f, i: nn.Dense(f, kernel_init=nn.initializers.normal(0.01), dtype=self.dtype,
                                  name=f"classifier_{i}")
    dropout = lambda y, i: nn.Dropout(self.dropout_rate, deterministic=not train,
                                      name=f"classifier_{i}")(y)
    x = nn.relu(dense(self.dense_units, 0)(x))
    x = nn.relu(dense(self.dense_units, 3)(dropout(x, 2)))
    features["pre_logits"] = x
    return classifier_output(dense(self.num_classes, 6)(dropout(x, 5))), features


@MODELS.register("vgg11", input_shape=(224, 224, 3))
def vgg11(**kw) -> VGG:
  return VGG(convs_per_stage=(1, 1, 2, 2, 2), **kw)


@MODELS.register("vgg13", input_shape=(224, 224, 3))
def vgg13(**kw) -> VGG:
  return VGG(convs_per_stage=(2, 2, 2, 2, 2), **kw)


@MODELS.register("vgg16", input_shape=(224, 224, 3))
def vgg16(**kw) -> VGG:
  return VGG(convs_per_stage=(2, 2, 3, 3, 3), **kw)


@MODELS.register("vgg19", input_shape=(224, 224, 3))
def vgg19(**kw) -> VGG:
  return VGG(convs_per_stage=(2, 2, 4, 4, 4), **kw)


@MODELS.register("vgg11_bn", input_shape=(224, 224, 3))
def vgg11_bn(**kw) -> VGG:
  return vgg11(use_batch_norm=True, **kw)


@MODELS.register("vgg13_bn", input_shape=(224, 224, 3))
def vgg13_bn(**kw) -> VGG:
  return vgg13(use_batch_norm=True, **kw)


@MODELS.register("vgg16_bn", input_shape=(224, 224, 3))
def vgg16_bn(**kw) -> VGG:
  return vgg16(use_batch_norm=True, **kw)


@MODELS.register("vgg19_bn", input_shape=(224, 224, 3))
def vgg19_bn(**kw) -> VGG:
  return vgg19(use_batch_norm=True, **kw)


@MODELS.register("vgg11_bn_cifar", input_shape=(32, 32, 3))
def vgg11_bn_cifar(**kw) -> VGG:
  return vgg11_bn(head="linear", num_classes=kw.pop("num_classes", 10), **kw)


@MODELS.register("vgg13_bn_cifar", input_shape=(32, 32, 3))
def vgg13_bn_cifar(**kw) -> VGG:
  return vgg13_bn(head="linear", num_classes=kw.pop("num_classes", 10), **kw)


@MODELS.register("vgg16_bn_cifar", input_shape=(32, 32, 3))
def vgg16_bn_cifar(**kw) -> VGG:
  return vgg16_bn(head="linear", num_classes=kw.pop("num_classes", 10), **kw)


@MODELS.register("vgg19_bn_cifar", input_shape=(32, 32, 3))
def vgg19_bn_cifar(**kw) -> VGG:
  return vgg19_bn(head="linear", num_classes=kw.pop("num_classes", 10), **kw)
