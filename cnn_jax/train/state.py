"""The train state: params, batch statistics, optimizer state, step, RNG, epoch totals."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from cnn_jax.errors import ShapeError


def zero_totals() -> dict[str, jax.Array]:
  """Running sums of the current epoch's training metrics (kept in the state so that a
  resumed run reports exactly the same epoch metrics as an uninterrupted one)."""
  return {"loss": jnp.zeros((), jnp.float32), "correct": jnp.zeros((), jnp.float32),
          "count": jnp.zeros((), jnp.float32)}


class TrainState(train_state.TrainState):
  """``flax`` TrainState plus ``batch_stats``, a dropout ``rng`` and epoch ``totals``.

  ``rng`` is a raw uint32 key; the key for step ``s`` is ``fold_in(rng, s)``, so the
  randomness of every step is fixed by the seed alone.
  """
  batch_stats: Any
  rng: jax.Array
  totals: dict[str, jax.Array]


def init_variables(model: nn.Module, rng: jax.Array, image_shape: tuple[int, int, int]) -> dict:
  """Initializes ``model`` for images of ``image_shape`` = (H, W, C)."""
  dummy = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  return model.init({"params": rng, "dropout": rng}, dummy, train=False)


def check_input_shape(model: nn.Module, image_shape: tuple[int, int, int], model_name: str):
  """Raises a ShapeError if ``model`` cannot take images of ``image_shape`` (checked abstractly)."""
  try:
    jax.eval_shape(lambda rng: init_variables(model, rng, image_shape), jax.random.PRNGKey(0))
  except ShapeError:
    raise
  except Exception as e:  # an XLA/flax shape failure deep inside the model
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
    raise ShapeError(
        f"Model {model_name!r} cannot take images of shape {list(image_shape)} (H, W, C): "
        f"{first_line}. Set dataset.image_size to a size this model accepts.") from None


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, seed: int,
                       image_shape: tuple[int, int, int]) -> TrainState:
  """Builds the initial state from ``seed`` (init and dropout streams are split from it)."""
  root = jax.random.PRNGKey(seed)
  variables = init_variables(model, jax.random.fold_in(root, 0), image_shape)
  return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                           batch_stats=variables.get("batch_stats", {}),
                           rng=jax.random.fold_in(root, 1), totals=zero_totals())
