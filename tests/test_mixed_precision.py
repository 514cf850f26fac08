"""bf16 compute keeps float32 parameters, batch-norm statistics, logits and loss."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cnn_jax.data import PreparedData
from cnn_jax.tasks.classification import ClassificationTask
from cnn_jax.train.loop import make_train_step
from cnn_jax.train.session import state_initializer, train_batch_spec


def _step(dtype: str, batch: dict):
  config = ml_collections.ConfigDict({"seed": 0, "model": {"name": "simple_cnn", "dtype": dtype},
                                      "dataset": {"name": "synthetic"},
                                      "train": {"label_smoothing": 0.0}, "optimizer": {}})
  task = ClassificationTask(config, PreparedData.synthetic((16, 16, 3),
                                                           [str(i) for i in range(10)]))
  networks = task.build_networks(lambda section: optax.sgd(0.1, momentum=0.9))
  init, _ = state_initializer(task, networks, 0, train_batch_spec(batch, 8))
  state = jax.jit(make_train_step(task))(init(), batch)
  logits, _ = task.predict(state, {"input": batch["image"]})
  return state, logits


def test_bfloat16_step_keeps_float32_state():
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.random((8, 16, 16, 3), np.float32)),
           "label": jnp.asarray(rng.integers(0, 10, 8), jnp.int32)}
  new, logits = _step("bfloat16", batch)
  for leaf in jax.tree.leaves(new.nets):
    assert leaf.dtype == jnp.float32
  assert logits.dtype == jnp.float32
  loss_bf16 = float(new.totals["loss"][0])
  assert np.isfinite(loss_bf16)
  # the bf16 step really computes in bf16: its loss differs slightly from the f32 step's
  loss_f32 = float(_step("float32", batch)[0].totals["loss"][0])
  assert loss_bf16 != loss_f32 and abs(loss_bf16 - loss_f32) / abs(loss_f32) < 0.05
