"""Batch norm with a hand-written backward pass for training mode.

:class:`BatchNorm` is ``nn.BatchNorm`` (same fields, variables, names and inference mode,
so checkpoints, weight converters and :func:`cnn_jax.transfer.param_groups.frozen_batch_norm`
see no difference) whose training-mode normalization over all axes but the channels is one
``jax.custom_vjp``. Its backward pass is the closed form

  dx = scale * rstd * (dy - mean(dy) - x_hat * mean(dy * x_hat)),  x_hat = (x - mean) * rstd

two channel reductions and one element-wise pass, where differentiating flax's forward
pass leaves XLA the gradients of the mean and of the variance as separate passes over the
activation. On the CPU a CIFAR ResNet-20 train step at batch 128 is 1.04-1.08x faster
(``benchmarks/batch_norm_step.py``); values and gradients equal ``nn.BatchNorm``'s to
float32 rounding (``tests/test_batch_norm.py``).

Other settings (a feature axis other than the last, ``axis_name``, masks, the two-pass
variance, no scale or no bias), inference mode and :func:`autodiff_batch_norm` blocks run
``nn.BatchNorm`` itself.
"""

import contextlib
import contextvars
import functools
from typing import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import module as flax_module


def batch_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``[..., C] -> ([C], [C])``: float32 mean and variance over all axes but the last (the
  variance as ``E[x^2] - E[x]^2``, clipped at 0, as flax's ``use_fast_variance``)."""
  axes = tuple(range(x.ndim - 1))
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axes)
  return mean, jnp.maximum(jnp.mean(x * x, axes) - mean * mean, 0.0)


_AUTODIFF = contextvars.ContextVar("batch_norm_autodiff", default=False)


@contextlib.contextmanager
def autodiff_batch_norm() -> Iterator[None]:
  """Within the block, :class:`BatchNorm` traces as ``nn.BatchNorm`` (flax's forward pass,
  differentiated by JAX): the reference that benchmarks and tests compare against."""
  token = _AUTODIFF.set(True)
  try:
    yield
  finally:
    _AUTODIFF.reset(token)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def normalize_train(x: jax.Array, scale: jax.Array, bias: jax.Array,
                    epsilon: float) -> jax.Array:
  """``[..., C]`` -> ``(x - mean) / sqrt(var + epsilon) * scale + bias`` with the batch's
  own statistics (:func:`batch_moments`), in float32, cast back to ``x.dtype``."""
  return _normalize_forward(x, scale, bias, epsilon)[0]


def _normalize_forward(x, scale, bias, epsilon):
  mean, var = batch_moments(x)
  rstd = jax.lax.rsqrt(var + epsilon)
  y = (x.astype(jnp.float32) - mean) * (rstd * scale) + bias
  return y.astype(x.dtype), (x, mean, rstd, scale)


def _normalize_backward(epsilon, residuals, dy):
  del epsilon
  x, mean, rstd, scale = residuals
  axes = tuple(range(x.ndim - 1))
  count = x.size // x.shape[-1]
  dy = dy.astype(jnp.float32)
  x_hat = (x.astype(jnp.float32) - mean) * rstd
  dbias = jnp.sum(dy, axes)
  dscale = jnp.sum(dy * x_hat, axes)
  dx = (scale * rstd) * (dy - dbias / count - x_hat * (dscale / count))
  return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias


normalize_train.defvjp(_normalize_forward, _normalize_backward)


class BatchNorm(nn.BatchNorm):
  """``nn.BatchNorm`` with :func:`normalize_train` in training mode; see the module
  docstring. ``[..., C] -> [..., C]``."""

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    inference = flax_module.merge_param(
        "use_running_average", self.use_running_average, use_running_average)
    if (inference or _AUTODIFF.get() or mask is not None or self.axis not in (-1, x.ndim - 1)
        or self.axis_name is not None or not self.use_fast_variance
        or not (self.use_scale and self.use_bias) or not self.force_float32_reductions):
      return super().__call__(x, use_running_average, mask=mask)
    channels = (x.shape[-1],)
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32),
                            channels)
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), channels)
    scale = self.param("scale", self.scale_init, channels, self.param_dtype)
    bias = self.param("bias", self.bias_init, channels, self.param_dtype)
    if not self.is_initializing():
      # The same reductions as inside normalize_train (XLA computes them once); the running
      # statistics are not differentiated.
      mean, var = jax.lax.stop_gradient(batch_moments(x))
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    y = normalize_train(x, scale.astype(jnp.float32), bias.astype(jnp.float32), self.epsilon)
    return y.astype(self.dtype or x.dtype)
