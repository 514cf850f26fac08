"""The fully on-device input path: a whole split lives on the accelerator(s).

``put_on_device`` copies a split (a dict of arrays) once. ``epoch_permutation`` makes an
epoch's order on the device (once per epoch: it sorts N keys, too slow to redo every
step on a CPU), and ``gather_batch``, inside the jitted train step, picks the step's
batch from it, so no image data moves from host to device per step. A 50,000-image
CIFAR-10 split is 154 MB as uint8.

Typical use (``batch_size`` static)::

  arrays = put_on_device({"image": x_train_u8, "label": y_train})
  perm = epoch_permutation(data_key, step // (n // batch_size), n)  # when the epoch changes
  batch = gather_batch(arrays, perm, step, batch_size)  # inside the step
"""

import jax
import jax.numpy as jnp
import numpy as np


def put_on_device(arrays: dict[str, np.ndarray],
                  sharding: jax.sharding.Sharding | None = None) -> dict[str, jax.Array]:
  """Copies a split ``{key: [N, ...]}`` (images uint8, or float32 if already preprocessed)
  to the device once.

  ``sharding``: where to put them, e.g. ``NamedSharding(mesh, PartitionSpec())`` to
  replicate the split on every device of a mesh; None puts them on the default device.
  """
  return {k: jax.device_put(v, sharding) for k, v in arrays.items()}


def epoch_permutation(key: jax.Array, epoch, num_examples: int) -> jax.Array:
  """The visiting order of ``epoch`` (int or traced): int32 ``[num_examples]``."""
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)


def gather_batch(arrays: dict[str, jax.Array], perm: jax.Array, step,
                 batch_size: int) -> dict[str, jax.Array]:
  """Gathers batch ``step % (N // batch_size)`` of an epoch's permutation; jittable.

  Args:
    arrays: ``{key: [N, ...]}``; ``"image"`` uint8 (scaled to [0, 1]) or float (cast to
      float32), every other key is gathered as it is.
    perm: ``[N]`` int, the epoch's order (e.g. from :func:`epoch_permutation`).
    step: the global step (int or traced); the last partial batch of an epoch is dropped.
    batch_size: a Python int (static under jit).

  Returns:
    ``{key: [batch_size, ...]}`` with float32 images.
  """
  steps_per_epoch = perm.shape[0] // batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"batch size {batch_size} is larger than the {perm.shape[0]} examples")
  start = (step % steps_per_epoch) * batch_size
  idx = jax.lax.dynamic_slice_in_dim(perm, start, batch_size)
  batch = {k: jnp.take(v, idx, axis=0, mode="clip", unique_indices=True)
           for k, v in arrays.items()}
  x = batch["image"]
  batch["image"] = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
  return batch


class DeviceBatches:
  """Training batches gathered on the device from a resident split, one per step.

  A drop-in for the grain iterator in the train loop: ``next()`` returns the batch dict
  already sharded over the mesh's ``data`` axis, and ``get_state()``/``set_state()`` hold
  the next step, so resuming is exact. Epoch ``e`` visits the examples in the order
  ``epoch_permutation(PRNGKey(seed), e, N)``.
  """

  def __init__(self, arrays: dict[str, np.ndarray], *, batch_size: int, seed: int,
               mesh: jax.sharding.Mesh):
    from jax.sharding import NamedSharding, PartitionSpec as P
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    self.arrays = put_on_device(arrays, replicated)
    self.num_examples, self.batch_size = len(arrays["image"]), batch_size
    self.steps_per_epoch = self.num_examples // batch_size
    self.key, self.step, self._epoch, self._perm = jax.random.PRNGKey(seed), 0, None, None
    self._permute = jax.jit(lambda key, epoch: epoch_permutation(key, epoch, self.num_examples),
                            out_shardings=replicated)
    self._gather = jax.jit(lambda arrays, perm, step: gather_batch(arrays, perm, step, batch_size),
                           out_shardings=sharded)

  def get_state(self) -> dict:
    return {"next_index": self.step}

  def set_state(self, state: dict) -> None:
    self.step = int(state["next_index"])

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    epoch = self.step // self.steps_per_epoch
    if epoch != self._epoch:
      self._epoch, self._perm = epoch, self._permute(self.key, epoch)
    batch = self._gather(self.arrays, self._perm, self.step)
    self.step += 1
    return batch
