"""CycleGAN's networks (Zhu et al. 2017, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks"): a ResNet-block generator and a PatchGAN
discriminator, both with instance norm. Registered in ``MODELS``::

  translated, features = generator.apply(variables, images, train=False)
  logit_map, features = discriminator.apply(variables, images, train=False)

* ``images``: float ``[B, H, W, C]``, usually in [-1, 1].
* ``translated``: float32 ``[B, H, W, out_channels]`` in [-1, 1] (tanh); ``H`` and ``W``
  must be multiples of ``2 ** num_downsamples``. ``out_channels`` may differ from ``C``
  (MNIST ``C = 1`` to MNIST-M ``3``).
* ``logit_map``: float32 ``[B, h, w]``, one real-vs-fake logit per overlapping patch.

The generator is the paper's (after Johnson et al. 2016): a 7x7 convolution with reflect
padding, ``num_downsamples`` stride-2 3x3 convolutions doubling the width, ``num_blocks``
residual blocks (two reflect-padded 3x3 convolutions each), as many 2x upsamplings back
(``pixel_shuffle`` by default, the fastest method of :mod:`cnn_jax.models.upsample`;
``"transpose"`` is the paper's), and a 7x7 convolution with tanh. Each convolution but
the last is followed by instance norm and ReLU. The paper uses ``width=64`` with 6 blocks
at 128x128 and 9 at 256x256; digits need far less (e.g. ``width=32, num_blocks=3``).

The discriminator is pix2pix's PatchGAN: 4x4 convolutions with 1 pixel of zero padding,
``num_layers`` of them with stride 2 (width doubling up to 8x, no norm on the first), one
with stride 1, then a stride-1 convolution to one logit per patch; LeakyReLU 0.2. With
``num_layers=3`` each logit sees a 70x70 patch (the paper's choice for 256x256 images);
on 28x28 or 32x32 images ``num_layers=2`` leaves a 5x5 or 6x6 map of 34x34 patches.
Instance norm keeps learned scale and bias (flax's default; the paper's code has none).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ShapeError
from cnn_jax.models import MODELS
from cnn_jax.models.upsample import Upsample


def reflect_pad(x: jnp.ndarray, pad: int) -> jnp.ndarray:
  """``[B, H, W, C] -> [B, H + 2 pad, W + 2 pad, C]``, mirrored without repeating the edge."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def instance_norm(dtype: Any, name: str) -> nn.InstanceNorm:
  """Per-example, per-channel normalization over H and W; float32 scale and bias."""
  return nn.InstanceNorm(epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, name=name)


class ResidualBlock(nn.Module):
  """``x + IN(conv(relu(IN(conv(x)))))`` with reflect padding. ``[B, H, W, C] -> same``."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    channels = x.shape[-1]
    y = nn.Conv(channels, (3, 3), padding="VALID", use_bias=False, dtype=self.dtype,
                name="conv1")(reflect_pad(x, 1))
    y = nn.relu(instance_norm(self.dtype, "norm1")(y))
    y = nn.Conv(channels, (3, 3), padding="VALID", use_bias=False, dtype=self.dtype,
                name="conv2")(reflect_pad(y, 1))
    return x + instance_norm(self.dtype, "norm2")(y)


class ResnetGenerator(nn.Module):
  """``[B, H, W, C] -> ([B, H, W, out_channels] in [-1, 1], features)``.

  ``features`` holds ``"stage{i}"`` for the downsampled maps and ``"bottleneck"``, the
  output of the last residual block.
  """
  out_channels: int = 3
  width: int = 64
  num_downsamples: int = 2
  num_blocks: int = 6
  upsample: str = "pixel_shuffle"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False):
    del train  # instance norm has no running statistics; no dropout
    factor = 2 ** self.num_downsamples
    if images.ndim != 4 or images.shape[1] % factor or images.shape[2] % factor:
      raise ShapeError(f"resnet_generator with num_downsamples={self.num_downsamples} needs "
                       f"images [B, H, W, C] with H and W divisible by {factor}, got "
                       f"{list(images.shape)}; pad the images or lower num_downsamples.")
    conv = lambda f, k, s, name: nn.Conv(f, (k, k), (s, s), padding="VALID", use_bias=False,
                                         dtype=self.dtype, name=name)
    x = conv(self.width, 7, 1, "stem")(reflect_pad(images.astype(self.dtype), 3))
    x = nn.relu(instance_norm(self.dtype, "stem_norm")(x))
    features = {}
    for i in range(self.num_downsamples):
      x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
      x = conv(self.width * 2 ** (i + 1), 3, 2, f"down{i + 1}")(x)
      x = nn.relu(instance_norm(self.dtype, f"down{i + 1}_norm")(x))
      features[f"stage{i + 1}"] = x
    for i in range(self.num_blocks):
      x = ResidualBlock(self.dtype, name=f"block{i + 1}")(x)
    features["bottleneck"] = x
    for i in range(self.num_downsamples):
      x = Upsample(self.width * 2 ** (self.num_downsamples - 1 - i), method=self.upsample,
                   use_bias=False, dtype=self.dtype, name=f"up{i + 1}")(x)
      x = nn.relu(instance_norm(self.dtype, f"up{i + 1}_norm")(x))
    x = nn.Conv(self.out_channels, (7, 7), padding="VALID", dtype=self.dtype,
                name="output")(reflect_pad(x, 3))
    return jnp.tanh(x.astype(jnp.float32)), features


def patch_map_size(side: int, num_layers: int) -> int:
  """The side of the PatchGAN's logit map for an input side (4x4 kernels, padding 1)."""
  for _ in range(num_layers):
    side = (side - 2) // 2 + 1
  return side - 2  # two stride-1 convolutions each remove one pixel


class PatchDiscriminator(nn.Module):
  """``[B, H, W, C] -> ([B, h, w] logits, features)``, ``features["stage{i}"]`` the maps."""
  width: int = 64
  num_layers: int = 3
  leaky_slope: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False):
    del train  # instance norm has no running statistics; no dropout
    if images.ndim != 4 or min(patch_map_size(s, self.num_layers) for s in images.shape[1:3]) < 1:
      raise ShapeError(f"patch_discriminator with num_layers={self.num_layers} maps images "
                       f"{list(images.shape)} to an empty logit map; use fewer layers or "
                       "larger [B, H, W, C] images.")
    padding = ((1, 1), (1, 1))
    x, features = images.astype(self.dtype), {}
    for i in range(self.num_layers + 1):
      stride = 2 if i < self.num_layers else 1
      x = nn.Conv(self.width * min(2 ** i, 8), (4, 4), (stride, stride), padding=padding,
                  use_bias=i == 0, dtype=self.dtype, name=f"conv{i + 1}")(x)
      if i:
        x = instance_norm(self.dtype, f"conv{i + 1}_norm")(x)
      x = nn.leaky_relu(x, self.leaky_slope)
      features[f"stage{i + 1}"] = x
    logits = nn.Conv(1, (4, 4), padding=padding, dtype=self.dtype, name="output")(x)
    return logits[..., 0].astype(jnp.float32), features


@MODELS.register("resnet_generator", input_shape=(32, 32, 3), output="image")
def resnet_generator(**kw) -> ResnetGenerator:
  return ResnetGenerator(**kw)


@MODELS.register("patch_discriminator", input_shape=(32, 32, 3), output="logit_map")
def patch_discriminator(**kw) -> PatchDiscriminator:
  return PatchDiscriminator(**kw)
