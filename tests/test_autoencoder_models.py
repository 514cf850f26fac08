"""Autoencoders: shapes at every input size, the sigmoid range, parameter counts, bad
input, and a short training on sklearn digits that must cut the reconstruction error."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models import create, model_options


def count(variables) -> int:
  return sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"]))


def numpy_variables(model, x, scale: float = 0.3):
  """Variables of ``model`` for input ``x`` drawn with numpy (kernels normal, vectors such as
  biases, scales and batch-norm statistics ones): the shapes come from an abstract
  ``init``, so no initializer is compiled (about a second per layer on CPU)."""
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  rng = np.random.default_rng(0)
  draw = lambda s: rng.normal(size=s.shape) * scale if s.ndim > 1 else np.ones(s.shape)
  return jax.tree.map(lambda s: jnp.asarray(draw(s), s.dtype), shapes)


def abstract_apply(model, shape):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  return variables, jax.eval_shape(lambda v, x: model.apply(v, x, train=True), variables, x)


VARIANTS = [("dense_autoencoder", {}), ("conv_autoencoder", {"widths": (8, 16)}),
            ("conv_autoencoder", {"widths": (8, 16, 32)})]


@pytest.mark.parametrize("name,options", VARIANTS)
@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3), (8, 8, 1)])
def test_output_has_the_input_shape(name, options, image_shape):
  model = create(name, image_shape=image_shape, latent_dim=16, **options)
  _, (recon, features) = abstract_apply(model, (3,) + image_shape)
  assert recon.shape == (3,) + image_shape and recon.dtype == jnp.float32
  assert features["latent"].shape == (3, 16) and features["latent"].dtype == jnp.float32


def test_conv_autoencoder_stages_and_convolutional_latent():
  # 28 is not a multiple of 8: padded to 32 inside, cropped back to 28 at the output.
  model = create("conv_autoencoder", widths=(8, 16, 32), latent_dim=None)
  _, (recon, features) = abstract_apply(model, (2, 28, 28, 1))
  assert recon.shape == (2, 28, 28, 1)
  assert [features[f"stage{i}"].shape[1] for i in (1, 2, 3)] == [16, 8, 4]
  assert features["latent"].shape == (2, 4 * 4 * 32)


def test_dense_autoencoder_is_the_notes_model():
  assert set(model_options("dense_autoencoder")) == {"dtype", "image_shape", "latent_dim"}
  model = create("dense_autoencoder")
  variables, _ = abstract_apply(model, (1, 28, 28, 1))
  assert model.latent_dim == 64
  assert count(variables) == (784 * 64 + 64) + (64 * 784 + 784)  # 101,200
  small = create("dense_autoencoder", image_shape=(8, 8, 1), latent_dim=16)
  variables, _ = abstract_apply(small, (1, 8, 8, 1))
  assert count(variables) == (64 * 16 + 16) + (16 * 64 + 64)


def test_reconstructions_are_in_the_unit_range():
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 8, 1)) * 40.0 - 20.0  # saturate
  for model in (create("dense_autoencoder", image_shape=(8, 8, 1), latent_dim=4),
                create("conv_autoencoder", image_shape=(8, 8, 1), latent_dim=4, widths=(4, 8))):
    recon, _ = jax.jit(model.apply)(numpy_variables(model, x), x)
    assert recon.dtype == jnp.float32 and 0.0 <= float(recon.min()) <= float(recon.max()) <= 1.0


def test_bad_input_and_options_are_user_errors():
  model = create("dense_autoencoder", image_shape=(8, 8, 1))
  with pytest.raises(ShapeError, match=r"image_shape"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  with pytest.raises(ConfigError, match="num_classes"):
    create("conv_autoencoder", num_classes=10)
  with pytest.raises(ConfigError, match="at least one width"):
    create("conv_autoencoder", image_shape=(8, 8, 1), widths=()).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))


def test_dense_autoencoder_learns_sklearn_digits():
  """100 Adam steps on the 8x8 digits must cut the reconstruction MSE at least 3x."""
  from sklearn.datasets import load_digits
  images = jnp.asarray(load_digits().images[..., None] / 16.0, jnp.float32)  # [1797, 8, 8, 1]
  model = create("dense_autoencoder", image_shape=(8, 8, 1), latent_dim=16)
  params = model.init(jax.random.PRNGKey(0), images[:1])["params"]
  optimizer = optax.adam(1e-2)

  def loss_fn(params, batch):
    recon, _ = model.apply({"params": params}, batch)
    return jnp.mean((recon - batch) ** 2)

  @jax.jit
  def train(params):
    def step(carry, index):
      params, opt_state = carry
      batch = jax.lax.dynamic_slice_in_dim(images, (index * 128) % (1797 - 128), 128)
      grads = jax.grad(loss_fn)(params, batch)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(100))
    return params

  before = float(loss_fn(params, images))
  after = float(loss_fn(train(params), images))
  assert after < before / 3, (before, after)
  assert np.isfinite(after)
