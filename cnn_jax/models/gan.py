"""GAN generators and discriminators: the original MLP GAN and DCGAN.

Calling conventions (all registered in ``MODELS``)::

  images, features = generator.apply(variables, z, train=False)       # z: [B, latent_dim]
  logits, features = discriminator.apply(variables, images, train=False)

* ``images``: float32 ``[B, H, W, C]`` with ``(H, W, C) == image_shape``, in [-1, 1]
  (``tanh`` output) or [0, 1] (``sigmoid``); a discriminator takes images in the range
  its generator makes.
* ``logits``: float32 ``[B]``, one real-vs-fake logit per image (apply a sigmoid
  cross-entropy on logits, never a sigmoid then a log).
* ``features["pre_logits"]``: ``[B, D]``, the discriminator's last hidden layer.

``mlp_generator`` / ``mlp_discriminator`` follow Goodfellow et al. 2014, "Generative
Adversarial Nets" (fully connected nets; dropout in the discriminator).
``dcgan_generator`` / ``dcgan_discriminator`` follow Radford et al. 2016, "Unsupervised
Representation Learning with Deep Convolutional GANs": the generator projects ``z`` to a
small map, doubles it per stage with batch norm and ReLU, and ends in tanh; the
discriminator halves the resolution with strided 4x4 convolutions and LeakyReLU 0.2, with
batch norm on every layer but the first, and ends in one dense logit. No pooling anywhere.

DCGAN widths: the generator's ``widths[0]`` channels form the projected map of side
``H / 2 ** len(widths)``; every further width is one 2x upsampling stage, and a last 2x
upsampling makes the image. By default the generator has as many stages as the side can
be halved down to a map of at least 4 (28 -> 7, 32 -> 4, 64 -> 4), with 64 channels in
the last stage, doubling towards the start: ``(128, 64)`` for 28x28, ``(256, 128, 64)``
for 32x32, ``(512, 256, 128, 64)`` for 64x64 (the paper's 64x64 generator has twice these
widths). The discriminator mirrors that: ``(64, 128)``, ``(64, 128, 256)``, ...
Upsampling is ``pixel_shuffle`` by default (the fastest method of
:mod:`cnn_jax.models.upsample`); ``upsample="transpose"`` gives the paper's fractionally
strided convolutions. Weights use flax's default initializers, not the paper's N(0, 0.02).
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models import MODELS
from cnn_jax.models.autoencoder import check_image_shape
from cnn_jax.models.layers import activation, batch_norm
from cnn_jax.models.upsample import Upsample

OUTPUTS = ("tanh", "sigmoid")


def _output_activation(name: str):
  if name not in OUTPUTS:
    raise ConfigError(f"Generator output must be one of {', '.join(OUTPUTS)}, got {name!r}.")
  return activation(name)


def _check_latent(z: jnp.ndarray, latent_dim: int, model: str) -> None:
  if z.ndim != 2 or z.shape[1] != latent_dim:
    raise ShapeError(f"{model} takes noise [B, {latent_dim}] (latent_dim={latent_dim}), got "
                     f"{list(z.shape)}.")


def dcgan_stages(side: int) -> int:
  """How many times DCGAN halves ``side`` by default: down to a map of at least 4."""
  stages = 0
  while side % 2 == 0 and side // 2 >= 4:
    side //= 2
    stages += 1
  return stages


class MLPGenerator(nn.Module):
  """``[B, latent_dim] -> ([B, H, W, C], {})``: Dense layers, then a tanh or sigmoid image."""
  latent_dim: int = 100
  image_shape: tuple = (28, 28, 1)
  widths: Sequence[int] = (256, 512, 1024)
  act: str = "leaky_relu"
  output: str = "tanh"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jnp.ndarray, train: bool = False):
    del train  # no dropout or batch norm
    _check_latent(z, self.latent_dim, "mlp_generator")
    out_act, act = _output_activation(self.output), activation(self.act)
    x = z.astype(self.dtype)
    for i, width in enumerate(self.widths):
      x = act(nn.Dense(width, dtype=self.dtype, name=f"dense{i + 1}")(x))
    x = nn.Dense(math.prod(self.image_shape), dtype=self.dtype, name="output")(x)
    images = out_act(x.astype(jnp.float32)).reshape((z.shape[0],) + tuple(self.image_shape))
    return images, {}


class MLPDiscriminator(nn.Module):
  """``[B, H, W, C] -> ([B] logits, {"pre_logits": [B, widths[-1]]})``."""
  image_shape: tuple = (28, 28, 1)
  widths: Sequence[int] = (512, 256)
  leaky_slope: float = 0.2
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False):
    check_image_shape(images, self.image_shape, "mlp_discriminator")
    x = images.astype(self.dtype).reshape(images.shape[0], -1)
    for i, width in enumerate(self.widths):
      x = nn.leaky_relu(nn.Dense(width, dtype=self.dtype, name=f"dense{i + 1}")(x),
                        self.leaky_slope)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = nn.Dense(1, dtype=self.dtype, name="output")(x)
    return logits[:, 0].astype(jnp.float32), {"pre_logits": x}


class DCGANGenerator(nn.Module):
  """``[B, latent_dim] -> ([B, H, W, C], features)``, ``features["stage{i}"]`` the maps."""
  latent_dim: int = 100
  image_shape: tuple = (28, 28, 1)
  widths: Sequence[int] | None = None  # None: see the module docstring
  upsample: str = "pixel_shuffle"
  output: str = "tanh"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jnp.ndarray, train: bool = False):
    _check_latent(z, self.latent_dim, "dcgan_generator")
    out_act = _output_activation(self.output)
    height, width, channels = self.image_shape
    widths = self.widths
    if widths is None:
      stages = dcgan_stages(min(height, width))
      widths = tuple(64 * 2 ** (stages - 1 - i) for i in range(stages))
    factor = 2 ** len(widths)
    if not widths or height % factor or width % factor:
      raise ConfigError(f"dcgan_generator with widths {list(widths)} doubles the map "
                        f"{len(widths)} times, so image_shape {list(self.image_shape)} needs "
                        f"sides divisible by {factor}; give fewer widths.")
    start_h, start_w = height // factor, width // factor
    x = nn.Dense(start_h * start_w * widths[0], use_bias=False, dtype=self.dtype,
                 name="project")(z.astype(self.dtype))
    x = x.reshape(z.shape[0], start_h, start_w, widths[0])
    x = nn.relu(batch_norm(train, self.dtype, name="project_bn")(x))
    features = {"stage1": x}
    for i, features_out in enumerate(widths[1:]):
      x = Upsample(features_out, method=self.upsample, use_bias=False, dtype=self.dtype,
                   name=f"up{i + 1}")(x)
      x = nn.relu(batch_norm(train, self.dtype, name=f"up{i + 1}_bn")(x))
      features[f"stage{i + 2}"] = x
    x = Upsample(channels, method=self.upsample, dtype=self.dtype, name="output")(x)
    return out_act(x.astype(jnp.float32)), features


class DCGANDiscriminator(nn.Module):
  """``[B, H, W, C] -> ([B] logits, features)`` with ``"pre_logits"`` and ``"stage{i}"``."""
  image_shape: tuple = (28, 28, 1)
  widths: Sequence[int] | None = None  # None: see the module docstring
  leaky_slope: float = 0.2
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False):
    check_image_shape(images, self.image_shape, "dcgan_discriminator")
    widths = self.widths
    if widths is None:
      widths = tuple(64 * 2 ** i for i in range(dcgan_stages(min(self.image_shape[:2]))))
    if not widths:
      raise ConfigError("dcgan_discriminator needs at least one width (model.widths).")
    x, features = images.astype(self.dtype), {}
    for i, features_out in enumerate(widths):
      x = nn.Conv(features_out, (4, 4), (2, 2), padding="SAME", use_bias=i == 0,
                  dtype=self.dtype, name=f"conv{i + 1}")(x)
      if i:
        x = batch_norm(train, self.dtype, name=f"conv{i + 1}_bn")(x)
      x = nn.leaky_relu(x, self.leaky_slope)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      features[f"stage{i + 1}"] = x
    x = x.reshape(x.shape[0], -1)
    features["pre_logits"] = x
    logits = nn.Dense(1, dtype=self.dtype, name="output")(x)
    return logits[:, 0].astype(jnp.float32), features


@MODELS.register("mlp_generator", input_shape=(100,), output="image")
def mlp_generator(**kw) -> MLPGenerator:
  return MLPGenerator(**kw)


@MODELS.register("mlp_discriminator", input_shape=(28, 28, 1), output="logit")
def mlp_discriminator(**kw) -> MLPDiscriminator:
  return MLPDiscriminator(**kw)


@MODELS.register("dcgan_generator", input_shape=(100,), output="image")
def dcgan_generator(**kw) -> DCGANGenerator:
  return DCGANGenerator(**kw)


@MODELS.register("dcgan_discriminator", input_shape=(28, 28, 1), output="logit")
def dcgan_discriminator(**kw) -> DCGANDiscriminator:
  return DCGANDiscriminator(**kw)
