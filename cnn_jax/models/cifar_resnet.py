"""CIFAR ResNets of He et al. 2015 (section 4.2): ResNet-20, 32, 44, 56 and 110.

A 3x3 convolution with 16 channels, then three stages of ``n = (depth - 2) / 6`` basic
blocks with 16, 32 and 64 channels (the first block of stages 2 and 3 has stride 2), global
average pooling and one dense layer: ``[B, 32, 32, C] -> 32x32x16 -> 16x16x32 -> 8x8x64``.

Shortcuts are identities; where the shape changes, the paper's option A subsamples with
stride 2 and zero-pads the new channels, so shortcuts add no parameters
(``shortcut="projection"`` gives option B, a 1x1 convolution and batch norm, instead).
Parameter counts for 10 classes and RGB input:

  ========  ===========  ===========
  depth     option A     option B
  ========  ===========  ===========
  20        269,722      272,474
  32        464,154      466,906
  44        658,586      661,338
  56        853,018      855,770
  110       1,727,962    1,730,714
  ========  ===========  ===========

The paper's table rounds them to 0.27M, 0.46M, 0.66M, 0.85M and 1.7M. Blocks are
:class:`cnn_jax.models.resnet.BasicBlock` and names follow the same rule (``conv1``,
``bn1``, ``layer{S}_{B}``, ``fc``).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.models import MODELS
from cnn_jax.models.layers import batch_norm, pooled_classifier
from cnn_jax.models.resnet import KAIMING_FAN_OUT, BasicBlock


class CifarResNet(nn.Module):
  """``[B, H, W, C] -> ([B, num_classes], features)``; any H, W (32x32 in the paper).

  Features: ``stage1`` .. ``stage3`` (``[B, H, W, 16]``, ``[B, H/2, W/2, 32]``,
  ``[B, H/4, W/4, 64]``) and ``pre_logits`` ``[B, 64]``.
  """
  depth: int = 20
  num_classes: int = 10
  shortcut: str = "pad"  # "pad" (option A) or "projection" (option B)
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    if (self.depth - 2) % 6 or self.depth < 8:
      raise ConfigError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110, ...), "
                        f"got {self.depth}.")
    blocks_per_stage = (self.depth - 2) // 6
    x = x.astype(self.dtype)
    x = nn.Conv(16, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, kernel_init=KAIMING_FAN_OUT,
                dtype=self.dtype, name="conv1")(x)
    x = nn.relu(batch_norm(train, self.dtype, name="bn1")(x))
    features = {}
    for s in range(3):
      for b in range(blocks_per_stage):
        x = BasicBlock(16 * 2**s, 2 if s > 0 and b == 0 else 1, shortcut=self.shortcut,
                       zero_init_residual=self.zero_init_residual, dtype=self.dtype,
                       name=f"layer{s + 1}_{b}")(x, train)
      features[f"stage{s + 1}"] = x
    return pooled_classifier(x, features, self.num_classes, train=train, dtype=self.dtype)


@MODELS.register("cifar_resnet20", input_shape=(32, 32, 3))
def cifar_resnet20(**kw) -> CifarResNet:
  return CifarResNet(depth=20, **kw)


@MODELS.register("cifar_resnet32", input_shape=(32, 32, 3))
def cifar_resnet32(**kw) -> CifarResNet:
  return CifarResNet(depth=32, **kw)


@MODELS.register("cifar_resnet44", input_shape=(32, 32, 3))
def cifar_resnet44(**kw) -> CifarResNet:
  return CifarResNet(depth=44, **kw)


@MODELS.register("cifar_resnet56", input_shape=(32, 32, 3))
def cifar_resnet56(**kw) -> CifarResNet:
  return CifarResNet(depth=56, **kw)


@MODELS.register("cifar_resnet110", input_shape=(32, 32, 3))
def cifar_resnet110(**kw) -> CifarResNet:
  return CifarResNet(depth=110, **kw)
