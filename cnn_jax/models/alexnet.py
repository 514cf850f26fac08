"""AlexNet (Krizhevsky et al. 2012) in torchvision's single-tower layout.

Five convolutions (64, 192, 384, 256, 256 channels), three 3x3/2 max pools, an adaptive
average pool to 6x6, and a 4096-4096 classifier with dropout: 61,100,840 parameters for
1000 classes and RGB input. Any input of at least 63x63 works; as in torchvision, a final
map smaller than 6x6 is spread over the 6x6 grid by the adaptive pool.

Layers are named after torchvision's ``nn.Sequential`` indices (``features_0``,
``classifier_1``, ...), so a state-dict key maps to a flax path by replacing ``.<n>`` with
``_<n>`` (see :mod:`cnn_jax.models.resnet` for the full rule). The flatten before the
classifier follows torchvision's ``(C, H, W)`` order, so ``classifier_1`` loads with a plain
transpose.

``alexnet_cifar`` (:class:`AlexNetCifar`) is the CIFAR-10 AlexNet of bearpaw/pytorch-classification
(``models/cifar/alexnet.py``): the same five convolutions with the paddings adjusted for 32x32
input and the dense layers removed, 2,472,266 parameters for 10 classes; that project reports
22.78% CIFAR-10 test error for it.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.models import MODELS
from cnn_jax.models.layers import (adaptive_avg_pool, check_image_size, classifier_output,
                                    flatten_chw, pooled_classifier)


class AlexNet(nn.Module):
  """AlexNet. ``[B, H, W, C] (H, W >= 63) -> ([B, num_classes], features)``.

  Features: ``stage1`` .. ``stage3`` (after each max pool) and ``pre_logits``
  ``[B, dense_units]``.
  """
  num_classes: int = 1000
  dense_units: int = 4096  # width of the two hidden classifier layers
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    check_image_size(x, 63, "AlexNet")
    conv = lambda f, k, s, p, index: nn.Conv(f, (k, k), (s, s), padding=((p, p), (p, p)),
                                             dtype=self.dtype, name=f"features_{index}")
    dense = lambda f, index: nn.Dense(f, dtype=self.dtype, name=f"classifier_{index}")
    dropout = lambda y, index: nn.Dropout(self.dropout_rate, deterministic=not train,
                                          name=f"classifier_{index}")(y)
    pool = lambda y: nn.max_pool(y, (3, 3), (2, 2))
    features = {}
    x = x.astype(self.dtype)
    x = pool(nn.relu(conv(64, 11, 4, 2, 0)(x)))
    features["stage1"] = x
    x = pool(nn.relu(conv(192, 5, 1, 2, 3)(x)))
    features["stage2"] = x
    x = nn.relu(conv(384, 3, 1, 1, 6)(x))
    x = nn.relu(conv(256, 3, 1, 1, 8)(x))
    x = pool(nn.relu(conv(256, 3, 1, 1, 10)(x)))
    features["stage3"] = x
    x = flatten_chw(adaptive_avg_pool(x, (6, 6)))
    x = nn.relu(dense(self.dense_units, 1)(dropout(x, 0)))
    x = nn.relu(dense(self.dense_units, 4)(dropout(x, 3)))
    features["pre_logits"] = x
    return classifier_output(dense(self.num_classes, 6)(x)), features


class AlexNetCifar(nn.Module):
  """AlexNet for 32x32 images. ``[B, H, W, C] (H, W >= 32) -> ([B, num_classes], features)``.

  11x11/4 conv 64 (padding 5) -> 2x2 max pool -> 5x5 conv 192 -> 2x2 max pool -> 3x3 convs
  384, 256, 256 -> 2x2 max pool -> one dense layer, ReLU after every conv; a 32x32 image gives
  8x8, 4x4, 2x2 and 1x1 maps. No batch norm or dropout (bearpaw trains it at learning rate
  0.01). Features: ``stage1`` .. ``stage3`` (after each max pool) and ``pre_logits``
  ``[B, 256]`` (the last map averaged over space: the 1x1 map itself for 32x32 input).
  """
  num_classes: int = 10
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    del train  # no dropout or batch norm
    check_image_size(x, 32, "alexnet_cifar")
    conv = lambda f, k, s, p, name: nn.Conv(f, (k, k), (s, s), padding=((p, p), (p, p)),
                                            dtype=self.dtype, name=name)
    pool = lambda y: nn.max_pool(y, (2, 2), (2, 2))
    features = {}
    x = pool(nn.relu(conv(64, 11, 4, 5, "conv1")(x.astype(self.dtype))))
    features["stage1"] = x
    x = pool(nn.relu(conv(192, 5, 1, 2, "conv2")(x)))
    features["stage2"] = x
    x = nn.relu(conv(384, 3, 1, 1, "conv3")(x))
    x = nn.relu(conv(256, 3, 1, 1, "conv4")(x))
    x = pool(nn.relu(conv(256, 3, 1, 1, "conv5")(x)))
    features["stage3"] = x
    return pooled_classifier(x, features, self.num_classes, train=False, dtype=self.dtype,
                             name="classifier")


@MODELS.register("alexnet", input_shape=(224, 224, 3))
def alexnet(**kw) -> AlexNet:
  return AlexNet(**kw)


@MODELS.register("alexnet_cifar", input_shape=(32, 32, 3))
def alexnet_cifar(**kw) -> AlexNetCifar:
  return AlexNetCifar(**kw)
