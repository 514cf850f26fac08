"""Upsample: output shapes of every method, pixel_shuffle's layout, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.errors import ConfigError
from cnn_jax.models.upsample import METHODS, Upsample, nearest_resize, pixel_shuffle


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("factor", [2, 3])
def test_shapes_and_dtypes(method, factor):
  x = jnp.ones((2, 5, 7, 4))
  model = Upsample(6, factor=factor, method=method, dtype=jnp.bfloat16)
  variables = model.init(jax.random.PRNGKey(0), x)
  y = model.apply(variables, x)
  assert y.shape == (2, 5 * factor, 7 * factor, 6) and y.dtype == jnp.bfloat16
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))


def test_pixel_shuffle_matches_a_reference_loop():
  f, c = 2, 3
  x = np.arange(2 * 3 * 4 * c * f * f, dtype=np.float32).reshape(2, 3, 4, c * f * f)
  expected = np.zeros((2, 3 * f, 4 * f, c), np.float32)
  for h in range(3):
    for w in range(4):
      for i in range(f):
        for j in range(f):
          expected[:, h * f + i, w * f + j, :] = x[:, h, w, (i * f + j) * c:(i * f + j + 1) * c]
  np.testing.assert_array_equal(pixel_shuffle(jnp.asarray(x), f), expected)
  with pytest.raises(ConfigError, match="divisible"):
    pixel_shuffle(jnp.zeros((1, 2, 2, 6)), 2)


def test_nearest_resize_repeats_pixels():
  x = jnp.arange(6.0).reshape(1, 2, 3, 1)
  np.testing.assert_array_equal(nearest_resize(x, 2)[0, :, :, 0],
                                np.repeat(np.repeat(np.arange(6.0).reshape(2, 3), 2, 0), 2, 1))


@pytest.mark.parametrize("method", METHODS)
def test_gradients_are_finite_and_nonzero(method):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))
  model = Upsample(5, method=method)
  params = model.init(jax.random.PRNGKey(1), x)
  loss = lambda p, x: jnp.mean(model.apply(p, x) ** 2)  # noqa: E731
  grads = jax.grad(loss, argnums=(0, 1))(params, x)
  for g in jax.tree.leaves(grads):
    assert jnp.all(jnp.isfinite(g)) and jnp.any(g != 0)


def test_unknown_method():
  with pytest.raises(ConfigError, match="pixel_shuffle"):
    Upsample(4, method="deconv").init(jax.random.PRNGKey(0), jnp.ones((1, 2, 2, 1)))
