"""One train step sharded over 8 fake CPU devices equals the same step on 1 device."""

import functools

import jax
import numpy as np
import optax
import pytest

from cnn_jax import models
import ml_collections

from cnn_jax.tasks import get_task, steps
from cnn_jax.train import parallel
from cnn_jax.train.state import create_train_state


def _one_step(model, num_devices: int, batch: dict):
  mesh = parallel.make_mesh(num_devices)
  replicated = parallel.replicated(mesh)
  tx = optax.sgd(0.1, momentum=0.9)
  state = jax.jit(lambda: create_train_state(model, tx, 0, batch["image"].shape[1:]),
                  out_shardings=replicated)()
  config = ml_collections.ConfigDict({"train": {"label_smoothing": 0.1}})
  step = jax.jit(functools.partial(steps.train_step, task=get_task(config)),
                 in_shardings=(replicated, parallel.batch_sharded(mesh)),
                 out_shardings=replicated, donate_argnums=0)
  state = step(state, parallel.shard_batch(batch, mesh))
  return jax.device_get(state)


@pytest.mark.parametrize("name, shape", [("lenet5", (32, 32, 1)), ("simple_cnn", (16, 16, 3))])
def test_eight_devices_match_one(name, shape):
  assert jax.device_count() == 8, "conftest should provide 8 CPU devices"
  rng = np.random.default_rng(0)
  batch = {"image": rng.random((32,) + shape, np.float32),
           "label": rng.integers(0, 10, 32).astype(np.int32)}
  model = models.create(name, num_classes=10)
  one = _one_step(model, 1, batch)
  eight = _one_step(model, 8, batch)
  np.testing.assert_allclose(eight.totals["loss"], one.totals["loss"], rtol=1e-6)
  leaves_one = jax.tree.leaves((one.params, one.batch_stats))
  leaves_eight = jax.tree.leaves((eight.params, eight.batch_stats))
  assert len(leaves_one) == len(leaves_eight) > 0
  for a, b in zip(leaves_one, leaves_eight):
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_batch_size_must_divide_devices():
  from cnn_jax.errors import ConfigError
  with pytest.raises(ConfigError, match="divisible"):
    parallel.check_batch_size(30, parallel.make_mesh(8))
