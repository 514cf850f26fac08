"""The tensorflow-datasets source: mocked reads work, missing data offline fails fast."""

import time

import ml_collections
import pytest
import tensorflow_datasets as tfds

from cnn_jax.data import sources
from cnn_jax.errors import DataError


def _config(tmp_path, **extra):
  values = {"name": "tfds", "tfds_name": "mnist", "data_dir": str(tmp_path / "tfds"), **extra}
  return ml_collections.ConfigDict(values)


def test_missing_dataset_offline_fails_fast_with_instructions(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, "_network_reachable", lambda *a, **k: False)
  start = time.time()
  with pytest.raises(DataError, match="no internet connection") as error:
    sources.load(_config(tmp_path))
  assert time.time() - start < 10
  assert "download_and_prepare" in str(error.value) and "data_dir" in str(error.value)


def test_download_disabled(tmp_path):
  with pytest.raises(DataError, match="dataset.download is False"):
    sources.load(_config(tmp_path, download=False))


def test_unknown_tfds_name(tmp_path):
  with pytest.raises(DataError, match="no dataset 'mnistt'"):
    sources.load(_config(tmp_path, tfds_name="mnistt"))


def test_mocked_dataset_reads_train_and_test(tmp_path):
  with tfds.testing.mock_data(num_examples=24):
    data = sources.load(_config(tmp_path))
  assert data.train_images.shape == (24, 28, 28, 1) and data.train_images.dtype.name == "uint8"
  assert data.test_images.shape == (24, 28, 28, 1)
  assert data.class_names == [str(i) for i in range(10)]
  assert data.train_labels.max() < 10
