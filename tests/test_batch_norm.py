"""cnn_jax's BatchNorm (a hand-written training-mode backward pass) equals nn.BatchNorm:
values, gradients of the input, scale and bias, running statistics, and a model's train
step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.models import layers
from cnn_jax.models.normalization import BatchNorm, autodiff_batch_norm


def _loss_and_grads(module, variables, x):
  """A loss that weights every channel and position differently, its gradients with respect
  to the parameters and the input, the output and the updated statistics."""
  weights = jnp.sin(jnp.arange(np.prod(x.shape[1:]), dtype=jnp.float32)).reshape(x.shape[1:])

  def loss(params, x):
    y, updates = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                              mutable=["batch_stats"])
    return jnp.sum(jnp.tanh(y.astype(jnp.float32)) * weights), (y, updates)

  (value, (y, updates)), grads = jax.jit(
      jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(variables["params"], x)
  return value, y, grads, updates["batch_stats"]


def _close(a, b, rtol):
  np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=rtol,
                             atol=rtol * float(np.max(np.abs(np.asarray(b, np.float32)))))


@pytest.mark.parametrize("shape", [(4, 6, 5, 7), (16, 3)])
def test_training_mode_equals_flax(shape):
  x = jax.random.normal(jax.random.PRNGKey(0), shape) * 2.5 + 0.7
  ours = BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  variables = flax_bn.init(jax.random.PRNGKey(1), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(1), x)) == jax.tree.map(
      jnp.shape, variables)
  channels = shape[-1]
  variables = {"params": {"scale": jnp.linspace(0.5, 2.0, channels),
                          "bias": jnp.linspace(-1.0, 1.0, channels)},
               "batch_stats": {"mean": jnp.full(channels, 0.3), "var": jnp.full(channels, 1.7)}}
  value, y, (grad_params, grad_x), stats = _loss_and_grads(ours, variables, x)
  ref_value, ref_y, (ref_grad_params, ref_grad_x), ref_stats = _loss_and_grads(
      flax_bn, variables, x)
  _close(value, ref_value, 1e-5)
  _close(y, ref_y, 1e-5)
  _close(grad_x, ref_grad_x, 1e-5)
  for name in ("scale", "bias"):
    _close(grad_params[name], ref_grad_params[name], 1e-5)
  for name in ("mean", "var"):
    _close(stats[name], ref_stats[name], 1e-6)
  assert not np.allclose(stats["mean"], variables["batch_stats"]["mean"])  # it did update
  trace = lambda module: str(jax.make_jaxpr(  # noqa: E731
      lambda x: module.apply(variables, x, mutable=["batch_stats"]))(x))
  assert "custom_vjp" in trace(ours) and "custom_vjp" not in trace(flax_bn)


def test_constant_channel_and_bfloat16():
  """A channel with zero variance (clipped, as flax clips it) and bf16 activations."""
  x = jax.random.normal(jax.random.PRNGKey(2), (8, 4, 4, 3)).at[..., 1].set(2.0)
  for dtype, rtol in ((jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)):
    ours = BatchNorm(use_running_average=False, dtype=dtype)
    flax_bn = nn.BatchNorm(use_running_average=False, dtype=dtype)
    variables = flax_bn.init(jax.random.PRNGKey(3), x)
    xs = x.astype(dtype)
    _, y, (grad_params, grad_x), _ = _loss_and_grads(ours, variables, xs)
    _, ref_y, (ref_grad_params, ref_grad_x), _ = _loss_and_grads(flax_bn, variables, xs)
    assert y.dtype == ref_y.dtype == dtype
    assert np.all(np.isfinite(np.asarray(grad_x, np.float32)))
    _close(y, ref_y, rtol)
    _close(grad_x, ref_grad_x, rtol)
    _close(grad_params["scale"], ref_grad_params["scale"], rtol)


def test_inference_mode_and_other_axes_are_flax_itself():
  x = jax.random.normal(jax.random.PRNGKey(4), (4, 5, 6))
  for kwargs in ({"use_running_average": True}, {"use_running_average": False, "axis": 1},
                 {"use_running_average": False, "use_fast_variance": False}):
    ours, flax_bn = BatchNorm(**kwargs), nn.BatchNorm(**kwargs)
    variables = flax_bn.init(jax.random.PRNGKey(5), x)
    out = ours.apply(variables, x, mutable=["batch_stats"])[0]
    ref = flax_bn.apply(variables, x, mutable=["batch_stats"])[0]
    np.testing.assert_array_equal(out, ref)


class _ConvNet(nn.Module):
  """Two conv -> batch norm -> ReLU layers and a dense head, the models' pattern."""

  @nn.compact
  def __call__(self, x, train: bool):
    for features in (8, 16):
      x = nn.Conv(features, (3, 3), use_bias=False)(x)
      x = nn.relu(layers.batch_norm(train, jnp.float32)(x))
    return nn.Dense(10)(x.mean(axis=(1, 2)))


def test_train_step_matches_autodiff_batch_norm():
  """The gradients and statistics of a conv/BN net: the custom backward and flax's agree."""
  model = _ConvNet()
  x = jax.random.normal(jax.random.PRNGKey(6), (8, 12, 12, 3))
  labels = jnp.arange(8) % 10
  variables = model.init(jax.random.PRNGKey(7), x, train=False)

  def make_step():  # a new function per trace: jit caches traces by function
    def loss(params):
      logits, updates = model.apply({**variables, "params": params}, x, train=True,
                                    mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates

    return jax.jit(lambda: jax.grad(loss, has_aux=True)(variables["params"]))

  grads, updates = make_step()()
  with autodiff_batch_norm():
    ref_grads, ref_updates = make_step()()
  for got, want in zip(jax.tree.leaves((grads, updates)), jax.tree.leaves((ref_grads, ref_updates))):
    _close(got, want, 1e-4)
