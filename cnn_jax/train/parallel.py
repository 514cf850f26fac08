"""Data parallelism with ``jax.sharding``: a 1-D mesh over devices with a ``data`` axis.

Parameters and optimizer state are replicated; every batch is split along its first
axis over the mesh. ``jax.jit`` inserts the gradient all-reduce, and batch norm sees
the global batch, so N devices compute the same step as one device with the same
global batch. In multi-process runs each process feeds its own slice of the batch.
"""

import collections

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cnn_jax.errors import ConfigError


def make_mesh(num_devices: int = 0) -> Mesh:
  """A mesh over the first ``num_devices`` devices (0 = all devices of all processes)."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise ConfigError(f"train.num_devices={num_devices} but only {len(devices)} devices exist.")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "train.batch_size"):
  if batch_size % mesh.size:
    raise ConfigError(f"{what}={batch_size} must be divisible by the {mesh.size} devices; "
                      f"use a multiple of {mesh.size}.")


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Turns this process's numpy slice of a batch into global arrays sharded on ``data``."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


class DevicePrefetch:
  """The batches of a host iterator, sharded on ``mesh`` ``size - 1`` steps ahead of use.

  Each ``next()`` tops the queue up to ``size`` batches (``shard_batch`` starts their
  host-to-device copies, which JAX runs asynchronously) and returns the oldest, so the
  next batch's transfer overlaps the step that the caller dispatches with this one. The
  source must have ``get_state()`` / ``set_state()`` (the train pipeline's grain iterator);
  :meth:`get_state` is the source's state right after the batch last returned, not after
  the ones fetched ahead, so a checkpoint resumes exactly where training was.
  """

  def __init__(self, source, mesh: Mesh, size: int = 2):
    if size < 1:
      raise ConfigError(f"The device prefetch needs size >= 1 batches, got {size}.")
    self._source, self._mesh, self._size = source, mesh, size
    self._queue = collections.deque()
    self._state = source.get_state()

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    while len(self._queue) < self._size:
      try:
        batch = next(self._source)
      except StopIteration:
        break
      self._queue.append((shard_batch(batch, self._mesh), self._source.get_state()))
    if not self._queue:
      raise StopIteration
    batch, self._state = self._queue.popleft()
    return batch

  def get_state(self):
    return self._state

  def set_state(self, state) -> None:
    """Restarts at ``state`` (a :meth:`get_state` value), dropping the batches fetched ahead."""
    self._queue.clear()
    self._source.set_state(state)
    self._state = self._source.get_state()


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins a multi-process run (one process per host, or several on one machine).

  With no arguments, ``jax.distributed.initialize`` detects the cluster (SLURM, Open MPI,
  Cloud TPU, ...). On CPU, collectives across processes use gloo. Must run before any
  other JAX call.
  """
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
  except (RuntimeError, ValueError) as e:
    raise ConfigError(f"Could not join the distributed run ({str(e).splitlines()[0]}). Check "
                      "--coordinator HOST:PORT, --num-processes and --process-id.") from None
