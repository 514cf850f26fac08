"""Real training runs that over- and underfit are diagnosed as such."""

import os

from cnn_jax import config as config_lib
from cnn_jax.experiment import train
from conftest import REPO


def _config(overrides: list[str]):
  config = config_lib.load_config(os.path.join(REPO, "experiments", "digits_simple_cnn.py"))
  config_lib.apply_overrides(config, ["train.num_devices=1", "train.progress=false",
                                      *overrides])
  return config


def test_tiny_subset_big_model_no_regularization_overfits(tmp_path):
  config = _config(["dataset.train_subset=40", "model.dropout_rate=0.0",
                    "model.dense_units=(512,)", "optimizer.weight_decay=0.0",
                    "train.label_smoothing=0.0", "train.batch_size=8", "train.epochs=15",
                    "optimizer.learning_rate=0.02"])
  results = train(config, str(tmp_path))
  assert results["diagnosis"].verdict == "overfitting", str(results["diagnosis"])
  assert "overfitting" in open(tmp_path / "report.md").read().lower()


def test_starved_model_underfits(tmp_path):
  config = _config(["model.base_channels=2", "model.num_blocks=1", "model.dense_units=()",
                    "optimizer.learning_rate=0.0005", "train.epochs=3"])
  results = train(config, str(tmp_path))
  assert results["diagnosis"].verdict == "underfitting", str(results["diagnosis"])
