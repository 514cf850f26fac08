"""airbench's CIFAR-10 network (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single
GPU", arXiv:2404.00498; KellerJordan/cifar10-airbench), the speedrun recipe's model.

A frozen 2x2 patch-whitening convolution (:class:`PatchWhitening`: 3 -> 24 channels) and
GELU, then three groups of conv3x3 -> 2x2 max pool -> BN -> GELU -> conv3x3 -> BN -> GELU
(64, 256, 256 channels in airbench94; ``widths`` halves them for a CPU), batch norms without
a scale (airbench freezes their weights at 1) and with airbench's momentum (0.6 in PyTorch's
convention, 0.4 in flax's) and epsilon 1e-12, a global max pool and a bias-free dense layer.
Left out of airbench's model: the 1/9 scaling of the logits (tuned together with its
learning rates, which this codebase does not reproduce).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from cnn_jax.models import MODELS
from cnn_jax.models.layers import (KAIMING_FAN_OUT, batch_norm, check_image_size,
                                    classifier_output, conv)


def image_patches(x: jnp.ndarray, size: int) -> jnp.ndarray:
  """Every ``size x size`` patch of ``x [B, H, W, C]`` as ``[B, H-size+1, W-size+1,
  size * size * C]``, flattened in (row, column, channel) order -- the order of an HWIO
  kernel's first three axes."""
  height, width = x.shape[1] - size + 1, x.shape[2] - size + 1
  return jnp.concatenate([x[:, i:i + height, j:j + width] for i in range(size)
                          for j in range(size)], axis=-1)


def whitening_kernel(x: jnp.ndarray, size: int, eps: float) -> jnp.ndarray:
  """``[size, size, C, 2 * size^2 * C]``: the eigenvectors of the (uncentred) covariance of
  the ``size x size`` patches of ``x [B, H, W, C]``, each divided by the square root of its
  eigenvalue plus ``eps``, followed by their negatives (airbench's whitening layer: the
  first half of the outputs has a near-identity covariance over these patches)."""
  patches = image_patches(x.astype(jnp.float32), size)
  flat = patches.reshape(-1, patches.shape[-1])
  covariance = flat.T @ flat / flat.shape[0]
  eigenvalues, eigenvectors = jnp.linalg.eigh(covariance)
  scaled = eigenvectors / jnp.sqrt(eigenvalues + eps)
  return jnp.concatenate([scaled, -scaled], axis=1).reshape(size, size, x.shape[-1], -1)


class PatchWhitening(nn.Module):
  """A frozen patch-whitening convolution. ``[B, H, W, C] -> [B, H-p+1, W-p+1, 2 p^2 C]``.

  The kernel (:func:`whitening_kernel`) is computed from the first training batch in the
  first training step and kept in the ``whitening`` collection (with a step counter), not
  among the parameters, so it is never trained; inference before that step sees a zero
  kernel. The bias is a parameter trained for the first ``bias_train_steps`` steps and then
  held by a stop-gradient (its momentum still carries it a little: SGD's velocity decays by
  the momentum factor per step; airbench drops the parameter from the optimizer instead).
  """
  patch_size: int = 2
  eps: float = 5e-4
  bias_train_steps: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    size, outputs = self.patch_size, 2 * self.patch_size ** 2 * x.shape[-1]
    kernel = self.variable("whitening", "kernel", jnp.zeros,
                           (size, size, x.shape[-1], outputs), jnp.float32)
    steps = self.variable("whitening", "steps", jnp.zeros, (), jnp.int32)
    bias = self.param("bias", nn.initializers.zeros, (outputs,), jnp.float32)
    if train and not self.is_initializing():
      kernel.value = lax.cond(steps.value == 0,
                              lambda: whitening_kernel(x, size, self.eps),
                              lambda: kernel.value)
      bias = jnp.where(steps.value < self.bias_train_steps, bias, lax.stop_gradient(bias))
      steps.value = steps.value + 1
    y = lax.conv_general_dilated(x.astype(self.dtype), kernel.value.astype(self.dtype),
                                 (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias.astype(self.dtype)


class AirbenchNet(nn.Module):
  """airbench's network (see the module docstring). ``[B, 32, 32, C] -> ([B, num_classes],
  features)``; features ``stage1`` .. ``stage3`` (after each group) and ``pre_logits``
  ``[B, widths[-1]]``."""
  widths: Sequence[int] = (64, 256, 256)
  num_classes: int = 10
  whiten_bias_steps: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    check_image_size(x, 16, "airbench_cifar")
    x = nn.gelu(PatchWhitening(bias_train_steps=self.whiten_bias_steps, dtype=self.dtype,
                               name="whiten")(x, train))
    norm = lambda name: batch_norm(train, self.dtype, momentum=0.4, epsilon=1e-12,  # noqa: E731
                                   use_scale=False, name=name)
    features = {}
    for group, width in enumerate(self.widths, start=1):
      for layer in (1, 2):
        x = conv(width, (3, 3), padding="SAME", use_bias=False, kernel_init=KAIMING_FAN_OUT,
                 dtype=self.dtype, name=f"group{group}_conv{layer}")(x)
        if layer == 1:
          x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.gelu(norm(f"group{group}_bn{layer}")(x))
      features[f"stage{group}"] = x
    x = jnp.max(x.astype(jnp.float32), axis=(1, 2))
    features["pre_logits"] = x
    logits = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype, name="head")(x)
    return classifier_output(logits), features


@MODELS.register("airbench_cifar", input_shape=(32, 32, 3))
def airbench_cifar(**kw) -> AirbenchNet:
  return AirbenchNet(**kw)
