import numpy as np
import pytest

from cnn_jax.data import splits, sources
from conftest import digits_config


def _digits():
  config = digits_config()
  return sources.load(config.dataset), config


def test_three_way_split_is_stratified_disjoint_and_complete():
  data, config = _digits()
  chosen = splits.choose_indices(data, config.dataset, seed=0)
  train, val, test = chosen["train"], chosen["val"], chosen["test"]
  assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
  assert len(train) + len(val) + len(test) == len(data.train_labels)
  assert len(test) == pytest.approx(0.2 * len(data.train_labels), abs=1)
  overall = np.bincount(data.train_labels, minlength=10) / len(data.train_labels)
  for part in (train, val, test):
    share = np.bincount(data.train_labels[part], minlength=10) / len(part)
    assert np.abs(share - overall).max() < 0.02


def test_split_is_deterministic_and_saved(tmp_path):
  data, config = _digits()
  first = splits.load_or_choose(data, config.dataset, 0, str(tmp_path))
  again = splits.choose_indices(data, config.dataset, 0)
  reloaded = splits.load_or_choose(data, config.dataset, 123, str(tmp_path))  # seed ignored
  for k in ("train", "val", "test"):
    np.testing.assert_array_equal(first[k], again[k])
    np.testing.assert_array_equal(first[k], reloaded[k])
  other_seed = splits.choose_indices(data, config.dataset, 1)
  assert not np.array_equal(first["test"], other_seed["test"])


def test_own_test_split_is_kept_whole():
  rng = np.random.default_rng(0)
  data = sources.ArrayData.labelled(rng.integers(0, 255, (100, 4, 4, 1), np.uint8),
                                   np.arange(100) % 5,
                                   rng.integers(0, 255, (30, 4, 4, 1), np.uint8),
                                   np.arange(30) % 5, list("abcde"))
  config = digits_config()
  config.dataset.test_fraction = 0.0
  chosen = splits.choose_indices(data, config.dataset, 0)
  np.testing.assert_array_equal(chosen["test"], np.arange(30))
  assert chosen["test_from"] == "test"
  assert len(chosen["train"]) + len(chosen["val"]) == 100


def test_train_subset_is_stratified():
  data, config = _digits()
  config.dataset.train_subset = 100
  chosen = splits.choose_indices(data, config.dataset, 0)
  assert len(chosen["train"]) == 100
  assert np.bincount(data.train_labels[chosen["train"]]).min() >= 9
