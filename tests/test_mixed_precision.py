"""bf16 compute keeps float32 parameters, batch-norm statistics, logits and loss."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cnn_jax import models
from cnn_jax.tasks import get_task, steps
from cnn_jax.train.state import create_train_state


def test_bfloat16_step_keeps_float32_state():
  model = models.create("simple_cnn", num_classes=10, dtype=jnp.bfloat16)
  state = create_train_state(model, optax.sgd(0.1, momentum=0.9), 0, (16, 16, 3))
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.random((8, 16, 16, 3), np.float32)),
           "label": jnp.asarray(rng.integers(0, 10, 8), jnp.int32)}
  task = get_task(ml_collections.ConfigDict({"train": {"label_smoothing": 0.0}}))
  new = jax.jit(functools.partial(steps.train_step, task=task))(state, batch)
  for leaf in jax.tree.leaves((new.params, new.batch_stats, new.opt_state)):
    assert leaf.dtype == jnp.float32
  logits = steps.predict(new, batch["image"])
  assert logits.dtype == jnp.float32
  assert np.isfinite(float(new.totals["loss"]))
  # the bf16 step really computes in bf16: its loss differs slightly from the f32 step's
  f32 = models.create("simple_cnn", num_classes=10)
  state32 = create_train_state(f32, optax.sgd(0.1, momentum=0.9), 0, (16, 16, 3))
  new32 = jax.jit(functools.partial(steps.train_step, task=task))(state32, batch)
  a, b = float(new.totals["loss"]), float(new32.totals["loss"])
  assert a != b and abs(a - b) / abs(b) < 0.05
