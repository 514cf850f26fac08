"""One train step sharded over 8 fake CPU devices equals the same step on 1 device."""

import jax
import ml_collections
import numpy as np
import optax
import pytest

from cnn_jax.data import PreparedData
from cnn_jax.tasks.classification import ClassificationTask
from cnn_jax.train import parallel
from cnn_jax.train.loop import make_train_step
from cnn_jax.train.session import state_initializer, train_batch_spec


def _one_step(name: str, num_devices: int, batch: dict):
  mesh = parallel.make_mesh(num_devices)
  replicated = parallel.replicated(mesh)
  config = ml_collections.ConfigDict({"seed": 0, "model": {"name": name},
                                      "dataset": {"name": "synthetic"},
                                      "train": {"label_smoothing": 0.1}, "optimizer": {}})
  task = ClassificationTask(config, PreparedData.synthetic(batch["image"].shape[1:],
                                                           [str(i) for i in range(10)]))
  networks = task.build_networks(lambda section: optax.sgd(0.1, momentum=0.9))
  init, _ = state_initializer(task, networks, 0, train_batch_spec(batch, len(batch["label"])))
  state = jax.jit(init, out_shardings=replicated)()
  step = jax.jit(make_train_step(task), in_shardings=(replicated, parallel.batch_sharded(mesh)),
                 out_shardings=replicated, donate_argnums=0)
  return jax.device_get(step(state, parallel.shard_batch(batch, mesh)))


@pytest.mark.parametrize("name, shape", [("lenet5", (32, 32, 1)), ("simple_cnn", (16, 16, 3))])
def test_eight_devices_match_one(name, shape):
  assert jax.device_count() == 8, "conftest should provide 8 CPU devices"
  rng = np.random.default_rng(0)
  batch = {"image": rng.random((32,) + shape, np.float32),
           "label": rng.integers(0, 10, 32).astype(np.int32)}
  one = _one_step(name, 1, batch)
  eight = _one_step(name, 8, batch)
  np.testing.assert_allclose(eight.totals["loss"], one.totals["loss"], rtol=1e-6)
  leaves_one = jax.tree.leaves(one.nets)
  leaves_eight = jax.tree.leaves(eight.nets)
  assert len(leaves_one) == len(leaves_eight) > 0
  if name == "simple_cnn":
    assert "batch_stats" in one.nets["net"].collections  # BN statistics are compared too
  for a, b in zip(leaves_one, leaves_eight):
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_batch_size_must_divide_devices():
  from cnn_jax.errors import ConfigError
  with pytest.raises(ConfigError, match="divisible"):
    parallel.check_batch_size(30, parallel.make_mesh(8))


def _label_batches(num_steps: int = 7):
  from cnn_jax.data import pipeline
  arrays = {"image": np.arange(20, dtype=np.float32).reshape(10, 2),
            "label": np.arange(10, dtype=np.int32)}
  return iter(pipeline.train_batches(arrays, batch_size=4, seed=0, num_steps=num_steps))


def test_device_prefetch_keeps_order_and_resume_state():
  from cnn_jax.errors import ConfigError
  mesh = parallel.make_mesh(1)
  plain = [np.asarray(b["label"]) for b in _label_batches()]
  prefetched = parallel.DevicePrefetch(_label_batches(), mesh, size=3)
  first = [np.asarray(next(prefetched)["label"]) for _ in range(3)]
  state = prefetched.get_state()  # after the third batch, not after the ones fetched ahead
  rest = [np.asarray(b["label"]) for b in prefetched]
  np.testing.assert_array_equal(np.stack(first + rest), np.stack(plain))
  resumed = parallel.DevicePrefetch(_label_batches(), mesh, size=2)
  resumed.set_state(state)
  np.testing.assert_array_equal(np.stack([np.asarray(b["label"]) for b in resumed]),
                                np.stack(plain[3:]))
  with pytest.raises(ConfigError, match="size >= 1"):
    parallel.DevicePrefetch(_label_batches(), mesh, size=0)
