"""Autoencoders: images in, reconstructions of the same shape out.

Two variants, registered in ``MODELS``::

  recon, features = model.apply(variables, images, train=False)

* ``images``: float ``[B, H, W, C]`` in [0, 1], with ``(H, W, C) == model.image_shape``.
* ``recon``: float32 ``[B, H, W, C]`` in [0, 1] (a sigmoid output).
* ``features["latent"]``: float32 ``[B, latent_dim]``, the code the decoder starts from.

``dense_autoencoder`` is the course notes' model: Flatten -> Dense(latent, relu) ->
Dense(H * W * C, sigmoid) -> reshape, latent 64 by default. For 28x28x1 it has 101,200
parameters (784 * 64 + 64 for the encoder, 64 * 784 + 784 for the decoder).

``conv_autoencoder`` halves the resolution with stride-2 3x3 convolutions (ReLU), maps
the flattened bottleneck to a linear ``latent_dim`` code and back, and doubles the
resolution with :class:`~cnn_jax.models.upsample.Upsample` (``pixel_shuffle`` by default,
the fastest method of ``benchmarks/upsampling.py``) before a 3x3 convolution with a sigmoid.
``latent_dim=None`` drops the dense bottleneck: the code is then the flattened last
feature map, as in the notes' fully convolutional denoising autoencoder. Inputs whose
sides are not multiples of ``2 ** len(widths)`` (28x28 with three levels, say) are padded
with zeros around the image and the reconstruction is cropped back to ``H x W``.
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models import MODELS
from cnn_jax.models.upsample import Upsample


def check_image_shape(x: jnp.ndarray, image_shape: Sequence[int], model: str) -> None:
  """Raises a ShapeError unless ``x`` is ``[B, *image_shape]``."""
  if x.ndim != 4 or tuple(x.shape[1:]) != tuple(image_shape):
    raise ShapeError(f"{model} was built for images [B, {', '.join(map(str, image_shape))}] "
                     f"but got {list(x.shape)}; set the model's image_shape to the dataset's "
                     "image shape (H, W, C).")


class DenseAutoencoder(nn.Module):
  """``[B, H, W, C] -> ([B, H, W, C] in [0, 1], {"latent": [B, latent_dim]})``."""
  image_shape: tuple = (28, 28, 1)
  latent_dim: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    del train  # no dropout or batch norm
    check_image_shape(x, self.image_shape, "dense_autoencoder")
    x = x.astype(self.dtype).reshape(x.shape[0], -1)
    latent = nn.relu(nn.Dense(self.latent_dim, dtype=self.dtype, name="encoder")(x))
    y = nn.Dense(math.prod(self.image_shape), dtype=self.dtype, name="decoder")(latent)
    recon = nn.sigmoid(y.astype(jnp.float32)).reshape((x.shape[0],) + tuple(self.image_shape))
    return recon, {"latent": latent.astype(jnp.float32)}


class ConvAutoencoder(nn.Module):
  """``[B, H, W, C] -> ([B, H, W, C] in [0, 1], features)``.

  ``features`` has ``"latent"`` ``[B, latent_dim]`` (or ``[B, h * w * widths[-1]]`` when
  ``latent_dim`` is None) and the encoder maps ``"stage1"``, ``"stage2"``, ...
  """
  image_shape: tuple = (28, 28, 1)
  latent_dim: int | None = 32
  widths: Sequence[int] = (32, 64)
  upsample: str = "pixel_shuffle"  # or "transpose" (the notes' Conv2DTranspose), "resize_conv"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    del train  # no dropout or batch norm
    check_image_shape(x, self.image_shape, "conv_autoencoder")
    if not self.widths:
      raise ConfigError("conv_autoencoder needs at least one width (model.widths).")
    height, width, channels = self.image_shape
    multiple = 2 ** len(self.widths)
    pad_h, pad_w = -height % multiple, -width % multiple
    top, left = pad_h // 2, pad_w // 2
    x = jnp.pad(x.astype(self.dtype),
                ((0, 0), (top, pad_h - top), (left, pad_w - left), (0, 0)))
    features = {}
    for i, features_out in enumerate(self.widths):
      x = nn.relu(nn.Conv(features_out, (3, 3), (2, 2), padding="SAME", dtype=self.dtype,
                          name=f"down{i + 1}")(x))
      features[f"stage{i + 1}"] = x
    bottleneck_shape = x.shape[1:]
    if self.latent_dim is None:
      latent = x.reshape(x.shape[0], -1)
    else:
      latent = nn.Dense(self.latent_dim, dtype=self.dtype, name="to_latent")(
          x.reshape(x.shape[0], -1))
      x = nn.Dense(math.prod(bottleneck_shape), dtype=self.dtype, name="from_latent")(
          latent).reshape((x.shape[0],) + bottleneck_shape)
    features["latent"] = latent.astype(jnp.float32)
    for i, features_out in enumerate(reversed(self.widths)):
      x = nn.relu(Upsample(features_out, method=self.upsample, dtype=self.dtype,
                           name=f"up{i + 1}")(x))
    y = nn.Conv(channels, (3, 3), padding="SAME", dtype=self.dtype, name="output")(x)
    recon = nn.sigmoid(y.astype(jnp.float32))[:, top:top + height, left:left + width]
    return recon, features


@MODELS.register("dense_autoencoder", input_shape=(28, 28, 1), output="image")
def dense_autoencoder(**kw) -> DenseAutoencoder:
  return DenseAutoencoder(**kw)


@MODELS.register("conv_autoencoder", input_shape=(28, 28, 1), output="image")
def conv_autoencoder(**kw) -> ConvAutoencoder:
  return ConvAutoencoder(**kw)
