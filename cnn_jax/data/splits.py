"""Deterministic, stratified train/validation/test splits, saved in the workdir.

The chosen indices (into the source's train and test arrays) are written to
``workdir/splits.npz`` on the first run and read back on every resume or later
evaluation, so an example never changes split.
"""

import os

import jax
import ml_collections
import numpy as np
from sklearn.model_selection import train_test_split

from cnn_jax.data.sources import ArrayData
from cnn_jax.errors import DataError

SPLITS_FILE = "splits.npz"


def _stratified_take(indices: np.ndarray, labels: np.ndarray, fraction_or_count, seed: int):
  """Splits ``indices`` into (rest, taken) with ``taken`` stratified by ``labels[indices]``."""
  try:
    rest, taken = train_test_split(indices, test_size=fraction_or_count, random_state=seed,
                                   stratify=labels[indices])
  except ValueError as e:
    raise DataError(f"Cannot make a stratified split of {len(indices)} examples "
                    f"(size {fraction_or_count}): {e}. Use a larger dataset or smaller "
                    "dataset.val_fraction / dataset.test_fraction.") from None
  return np.sort(rest), np.sort(taken)


def choose_indices(data: ArrayData, cfg: ml_collections.ConfigDict, seed: int) -> dict:
  """Returns ``{"train", "val", "test"}`` index arrays and ``"test_from"`` ("train"|"test").

  If the source has its own test split it is used whole; otherwise ``test_fraction``
  of the training data is held out. ``val_fraction`` of what remains becomes the
  validation set. ``train_subset`` (a count) optionally keeps a stratified subset of
  the training examples, e.g. to provoke overfitting.
  """
  labels = data.train_labels
  pool = np.arange(len(labels))
  if data.test_images is not None and not cfg.get("test_fraction"):
    test, test_from = np.arange(len(data.test_labels)), "test"
  else:
    if not cfg.get("test_fraction"):
      raise DataError(f"Dataset {cfg.name!r} has no test split: set dataset.test_fraction "
                      "(e.g. 0.2).")
    pool, test = _stratified_take(pool, labels, cfg.test_fraction, seed)
    test_from = "train"
  train, val = _stratified_take(pool, labels, cfg.val_fraction, seed + 1)
  if cfg.get("train_subset"):
    _, train = _stratified_take(train, labels, int(cfg.train_subset), seed + 2)
  return {"train": train, "val": val, "test": test, "test_from": test_from}


def load_or_choose(data: ArrayData, cfg: ml_collections.ConfigDict, seed: int,
                   workdir: str | None) -> dict:
  """Reads ``workdir/splits.npz`` if present (checking it fits ``data``), else chooses and saves."""
  path = os.path.join(workdir, SPLITS_FILE) if workdir else None
  if path and os.path.exists(path):
    with np.load(path, allow_pickle=False) as f:
      split = {k: f[k] for k in ("train", "val", "test")}
      split["test_from"] = str(f["test_from"])
    n_train = len(data.train_labels)
    n_test = n_train if split["test_from"] == "train" else len(data.test_labels)
    if (max(split["train"].max(), split["val"].max()) >= n_train
        or split["test"].max() >= n_test):
      raise DataError(f"{path} does not fit dataset {cfg.name!r} (indices out of range): the "
                      "dataset changed since this workdir was created. Use a new --workdir.")
    return split
  split = choose_indices(data, cfg, seed)
  if path and jax.process_index() == 0:  # every process chooses the same; one writes
    os.makedirs(workdir, exist_ok=True)
    np.savez(path, **split)
  return split


def apply(data: ArrayData, split: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Materializes ``{"train"|"val"|"test": (images uint8 [N,H,W,C], labels int32 [N])}``."""
  x, y = data.train_images, data.train_labels
  tx, ty = (x, y) if split["test_from"] == "train" else (data.test_images, data.test_labels)
  return {"train": (x[split["train"]], y[split["train"]]),
          "val": (x[split["val"]], y[split["val"]]),
          "test": (tx[split["test"]], ty[split["test"]])}
