"""Deterministic train/validation/test splits (stratified by label when the data has labels),
saved in the workdir.

The chosen indices (into the source's train and test arrays) are written to
``workdir/splits.npz`` on the first run and read back on every resume or later
evaluation, so an example never changes split.
"""

import os

import jax
import ml_collections
import numpy as np
from sklearn.model_selection import train_test_split

from cnn_jax.config import atomic_write
from cnn_jax.data.sources import ArrayData
from cnn_jax.errors import DataError

SPLITS_FILE = "splits.npz"


def _take(indices: np.ndarray, labels: np.ndarray | None, fraction_or_count, seed: int,
          what: str):
  """Splits ``indices`` into (rest, taken), stratified by ``labels[indices]`` when there are
  labels (a plain seeded shuffle otherwise)."""
  try:
    rest, taken = train_test_split(indices, test_size=fraction_or_count, random_state=seed,
                                   stratify=None if labels is None else labels[indices])
  except ValueError as e:
    raise DataError(f"Cannot split {len(indices)} examples to take {what}={fraction_or_count} "
                    f"({e}). Choose {what} so that every class keeps at least one example in "
                    "each part, or use a larger dataset.") from None
  return np.sort(rest), np.sort(taken)


def choose_indices(data: ArrayData, cfg: ml_collections.ConfigDict, seed: int) -> dict:
  """Returns ``{"train", "val", "test"}`` index arrays and ``"test_from"`` ("train"|"test").

  If the source has its own test split it is used whole; otherwise ``test_fraction``
  of the training data is held out. ``val_fraction`` of what remains becomes the
  validation set. ``train_subset`` (a count) optionally keeps a stratified subset of
  the training examples, e.g. to provoke overfitting.
  """
  labels = data.train_labels
  pool = np.arange(len(data.train_images))
  if data.test_images is not None and not cfg.get("test_fraction"):
    test, test_from = np.arange(len(data.test_images)), "test"
  else:
    if not cfg.get("test_fraction"):
      raise DataError(f"Dataset {cfg.name!r} has no test split: set dataset.test_fraction "
                      "(e.g. 0.2).")
    pool, test = _take(pool, labels, cfg.test_fraction, seed, "dataset.test_fraction")
    test_from = "train"
  train, val = _take(pool, labels, cfg.val_fraction, seed + 1, "dataset.val_fraction")
  if cfg.get("train_subset"):
    _, train = _take(train, labels, int(cfg.train_subset), seed + 2, "dataset.train_subset")
  return {"train": train, "val": val, "test": test, "test_from": test_from}


def load_or_choose(data: ArrayData, cfg: ml_collections.ConfigDict, seed: int,
                   workdir: str | None) -> dict:
  """Reads ``workdir/splits.npz`` if present (checking it fits ``data``), else chooses and saves."""
  path = os.path.join(workdir, SPLITS_FILE) if workdir else None
  if path and os.path.exists(path):
    split = _read(path)
    n_train = len(data.train_images)
    n_test = n_train if split["test_from"] == "train" else len(data.test_images)
    if (max(split["train"].max(), split["val"].max()) >= n_train
        or split["test"].max() >= n_test):
      raise DataError(f"{path} does not fit dataset {cfg.name!r} (indices out of range): the "
                      "dataset changed since this workdir was created. Use a new --workdir.")
    return split
  split = choose_indices(data, cfg, seed)
  if path and jax.process_index() == 0:  # every process chooses the same; one writes
    os.makedirs(workdir, exist_ok=True)
    with atomic_write(path, "wb") as f:  # a kill never leaves half a file
      np.savez(f, **split)
  return split


def _read(path: str) -> dict:
  """The saved split indices; a damaged file is a DataError naming it."""
  try:
    with np.load(path, allow_pickle=False) as f:
      split = {k: f[k].astype(np.int64) for k in ("train", "val", "test")}
      split["test_from"] = str(f["test_from"])
  except Exception as e:  # truncated zip, missing key, pickled data
    raise DataError(f"{path} is damaged ({type(e).__name__}: {str(e)[:120]}). It records which "
                    "examples are in which split: restore it, or start in a new --workdir.") from None
  if split["test_from"] not in ("train", "test"):
    raise DataError(f"{path} is damaged (test_from={split['test_from']!r}); use a new --workdir.")
  return split


def apply(data: ArrayData, split: dict) -> dict[str, dict[str, np.ndarray]]:
  """Materializes ``{"train"|"val"|"test": {key: array}}`` (uint8 images, as the source)."""
  test_source = data.train if split["test_from"] == "train" else data.test
  pick = lambda arrays, idx: {k: v[idx] for k, v in arrays.items()}  # noqa: E731
  return {"train": pick(data.train, split["train"]), "val": pick(data.train, split["val"]),
          "test": pick(test_source, split["test"])}
