"""Batches: grain-driven training batches with checkpointable state, padded eval batches.

Training order is a pure function of (seed, step): epoch ``e`` visits the examples in
the order of a seeded grain shuffle, and step ``s`` reads batch ``s % steps_per_epoch``
of epoch ``s // steps_per_epoch`` (the last partial batch of an epoch is dropped).
The iterator state is therefore just the next step, which grain serializes as JSON
and which is saved in every checkpoint; restoring it resumes at the exact batch.
"""

from typing import Iterator

import grain
import numpy as np


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  return num_examples // batch_size


def train_batches(arrays: dict[str, np.ndarray], *, batch_size: int, seed: int,
                  num_steps: int, process_index: int = 0,
                  process_count: int = 1) -> grain.IterDataset:
  """A grain dataset of ``num_steps`` training batches for this process.

  Args:
    arrays: the training split, ``{key: [N, ...]}`` (e.g. ``"image"`` float32
      ``[N, H, W, C]``, ``"label"`` int32 ``[N]``, ``"mask"``, ``"boxes"``).
    batch_size: the global batch size (over all processes).
    seed: shuffling seed; every epoch uses a different permutation.
    num_steps: total number of batches (all epochs).
    process_index, process_count: each process gets its contiguous slice of every
      global batch (``batch_size / process_count`` examples).

  Returns:
    An IterDataset whose iterator yields ``{key: [b, ...]}`` for every key of ``arrays``
    and has ``get_state()`` / ``set_state()``.
  """
  n = len(next(iter(arrays.values())))
  per_epoch = steps_per_epoch(n, batch_size)
  if per_epoch == 0:
    raise ValueError(f"batch size {batch_size} is larger than the {n} training examples")
  order = grain.MapDataset.range(n).shuffle(seed=seed).repeat()
  local = batch_size // process_count
  offset = process_index * local

  def batch_at(step: int) -> dict:
    start = (step // per_epoch) * n + (step % per_epoch) * batch_size + offset
    idx = np.fromiter((order[start + k] for k in range(local)), np.int64, local)
    return {k: v[idx] for k, v in arrays.items()}

  return grain.MapDataset.range(num_steps).map(batch_at).to_iter_dataset()


def eval_batches(arrays: dict[str, np.ndarray], batch_size: int) -> Iterator[dict]:
  """Yields every example exactly once in fixed-size batches.

  The last batch is zero-padded to ``batch_size``. Two keys are added: ``"valid"`` ([B]
  bool) marks real rows, so metrics summed over it count each example once, and
  ``"index"`` ([B] int32) is each row's position in the split.
  """
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    rows = min(batch_size, n - start)
    pad = batch_size - rows
    batch = {}
    for k, v in arrays.items():
      part = v[start:start + rows]
      batch[k] = np.concatenate([part, np.zeros((pad,) + v.shape[1:], v.dtype)]) if pad else part
    batch["valid"] = np.arange(batch_size) < rows
    batch["index"] = np.arange(start, start + batch_size, dtype=np.int32)
    yield batch
