"""Data parallelism with ``jax.sharding``: a 1-D mesh over devices with a ``data`` axis.

Parameters and optimizer state are replicated; every batch is split along its first
axis over the mesh. ``jax.jit`` inserts the gradient all-reduce, and batch norm sees
the global batch, so N devices compute the same step as one device with the same
global batch. In multi-process runs each process feeds its own slice of the batch.
"""

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
