"""Autoencoding tasks end to end on sklearn digits: the CI-sized variants of the experiments."""

import json
import os

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cnn_jax import config as config_lib
from cnn_jax.errors import ConfigError
from cnn_jax.experiment import train
from conftest import REPO, cli


def _config(experiment: str, *overrides: str):
  config = config_lib.load_config(os.path.join(REPO, "experiments", f"{experiment}.py:digits"))
  config_lib.apply_overrides(config, ["train.num_devices=1", "train.progress=false", *overrides])
  return config


def test_dense_autoencoder_learns_and_reports(tmp_path):
  from cnn_jax import data as data_lib
  config = _config("fashion_mnist_autoencoder", "train.epochs=6")
  results = train(config, str(tmp_path))
  history = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [r["epoch"] for r in history] == list(range(1, 7))
  assert {"train_loss", "train_psnr", "val_loss", "val_mse", "val_mae",
          "val_psnr"} <= set(history[0])
  assert history[-1]["val_loss"] < 0.7 * history[0]["val_loss"]  # it learns
  test = results["test"]
  # clearly better than predicting every test image as the mean training image
  splits = data_lib.prepare(config, str(tmp_path)).splits
  mean_image = splits["train"]["image"].mean(axis=0)
  baseline_mse = ((splits["test"]["image"] - mean_image) ** 2).mean()
  assert test["mse"] < 0.6 * baseline_mse, (test["mse"], baseline_mse)
  for figure in ("test_reconstructions.png", "test_latent_pca.png"):
    assert (tmp_path / "eval" / figure).exists()
  assert "psnr" in (tmp_path / "report.md").read_text()


def test_denoising_beats_the_noisy_input_and_eval_reproduces_it(tmp_path):
  results = train(_config("mnist_denoising_autoencoder", "train.epochs=5"), str(tmp_path))
  test = results["test"]
  assert test["psnr"] > test["noisy_psnr"] + 0.5, test  # the reconstruction removes noise
  # the eval command restores a checkpoint and reproduces the metrics (same noise per example)
  proc = cli("eval", "--workdir", str(tmp_path), "--checkpoint", "latest")
  assert proc.returncode == 0, proc.stderr[-2000:]
  saved = json.loads((tmp_path / "eval" / "test.json").read_text())
  assert saved["psnr"] == pytest.approx(test["psnr"], abs=1e-5)
  assert saved["noisy_psnr"] == pytest.approx(test["noisy_psnr"], abs=1e-5)


def test_anomaly_detection_threshold_and_metrics(tmp_path):
  from cnn_jax.train.session import load_run
  results = train(_config("mnist_anomaly", "train.epochs=6", "task.normal_classes=1"),
                  str(tmp_path))
  test = results["test"]
  session, state, _, _ = load_run(str(tmp_path), "latest")
  data, evaluator = session.data, session.evaluator
  assert set(np.unique(data.splits["train"]["label"])) == {1}  # trained on normal data only
  assert len(np.unique(data.splits["test"]["label"])) == 10
  normal = evaluator.run(state, data.splits["train"], with_outputs=True)[1]["error"]
  assert test["threshold"] == pytest.approx(normal.mean() + normal.std(), rel=1e-5)
  errors = evaluator.run(state, data.splits["test"], with_outputs=True)[1]["error"]
  anomalous = data.splits["test"]["label"] != 1
  assert test["auc"] == pytest.approx(roc_auc_score(anomalous, errors), abs=1e-6)
  assert test["average_precision"] == pytest.approx(
      average_precision_score(anomalous, errors), abs=1e-6)
  assert test["auc"] > 0.9
  predicted = errors >= test["threshold"]
  assert test["at_threshold"]["recall"] == pytest.approx(predicted[anomalous].mean())
  assert test["at_threshold"]["specificity"] == pytest.approx(1 - predicted[~anomalous].mean())
  for figure in ("test_error_histogram.png", "test_roc.png", "test_reconstructions.png"):
    assert (tmp_path / "eval" / figure).exists()


def test_bad_task_options_fail_at_once(tmp_path):
  config = _config("mnist_anomaly")
  config.task.normal_clases = 3  # misspelled
  with pytest.raises(ConfigError, match="normal_classes"):
    train(config, str(tmp_path / "a"))
  config = _config("mnist_anomaly", "task.normal_classes=11")
  with pytest.raises(ConfigError, match="not a class"):
    train(config, str(tmp_path / "b"))
  config = _config("mnist_conv_autoencoder", "train.best_metric=val_accuracy")
  with pytest.raises(ConfigError, match="val_psnr"):
    train(config, str(tmp_path / "c"))
  assert not (tmp_path / "c" / "checkpoints").exists()
