"""Evaluation over whole splits: jit-compiled, data-parallel, padded and masked batches.

The task's ``eval_step`` returns statistics to sum (a pytree: ``(sum, count)`` pairs, a
confusion matrix, ...) and optionally per-example outputs; the evaluator adds up the
statistics over the split on the device and collects the outputs of the real rows on the
host.
"""

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data import pipeline
from cnn_jax.train import parallel


class Evaluator:
  """Runs ``task.eval_step`` over a split; used for validation and final evaluation."""

  def __init__(self, task, mesh, batch_size: int):
    self.task, self.mesh, self.batch_size = task, mesh, batch_size
    replicated, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)

    def step(state, sums, batch, with_outputs):
      batch_sums, outputs = task.eval_step(state, batch)
      return jax.tree.map(jnp.add, sums, batch_sums), (outputs if with_outputs else {})

    self._steps = {
        flag: jax.jit(lambda st, su, b, flag=flag: step(st, su, b, flag),
                      in_shardings=(replicated, replicated, sharded),
                      out_shardings=(replicated, replicated), donate_argnums=1)
        for flag in (False, True)}

  def batch_spec(self, arrays: dict[str, np.ndarray]) -> dict[str, jax.ShapeDtypeStruct]:
    """The abstract eval batch for a split (its arrays plus ``valid`` and ``index``)."""
    spec = {k: jax.ShapeDtypeStruct((self.batch_size,) + v.shape[1:], v.dtype)
            for k, v in arrays.items()}
    spec["valid"] = jax.ShapeDtypeStruct((self.batch_size,), np.bool_)
    spec["index"] = jax.ShapeDtypeStruct((self.batch_size,), np.int32)
    return spec

  def zero_sums(self, state, arrays: dict[str, np.ndarray]):
    """Zero statistics with the structure ``task.eval_step`` returns."""
    sums, _ = jax.eval_shape(self.task.eval_step, state, self.batch_spec(arrays))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums)

  def run(self, state, arrays: dict[str, np.ndarray], with_outputs: bool = False):
    """Summed statistics over ``arrays`` (on the host) and, if asked, the per-example
    outputs of every real row ``{name: [N, ...]}`` (an empty dict otherwise)."""
    sums = jax.device_put(self.zero_sums(state, arrays), parallel.replicated(self.mesh))
    collected: dict[str, list] = {}
    local = self.batch_size // jax.process_count()
    start = jax.process_index() * local
    step = self._steps[with_outputs]
    for batch in pipeline.eval_batches(arrays, self.batch_size):
      mine = {k: v[start:start + local] for k, v in batch.items()}
      sums, outputs = step(state, sums, parallel.shard_batch(mine, self.mesh))
      for name, value in jax.device_get(outputs).items():
        collected.setdefault(name, []).append(np.asarray(value)[batch["valid"]])
    return jax.device_get(sums), {k: np.concatenate(v) for k, v in collected.items()}

  def metrics(self, state, arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """The task's scalar metrics over ``arrays`` (e.g. the validation split)."""
    return self.task.summarize(self.run(state, arrays)[0])
