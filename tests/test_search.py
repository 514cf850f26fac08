"""Hyperparameter search: spaces checked like overrides; a search end to end (table, plots,
best experiment file, a pruned trial that says so) whose trials, differing only in learning
rate and weight decay, compile the train step once; SIGKILL mid-search, then two workers
finish the study (the running trial continues from its checkpoint, none runs twice)."""

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import optuna
import pytest

from conftest import REPO, run_cli
from cnn_jax import config as config_lib
from cnn_jax.errors import ConfigError
from cnn_jax.search import space as space_lib
from cnn_jax.search.report import write_report
from cnn_jax.search.study import load_study, run_search, trial_dir

SEARCH_CI = os.path.join(REPO, "experiments", "digits_search.py:ci")
# A small, fast experiment: the CI search config on 512 training images.
EXPERIMENT = """
from cnn_jax.config import load_config
from cnn_jax.search.space import choice, log_uniform, uniform


def get_config():
  config = load_config({base!r})
  config.dataset.train_subset = 512
  return config


def get_search_space():
  return {space}
"""
LR_WD = ('{"optimizer.learning_rate": log_uniform(0.01, 0.3), '
         '"optimizer.weight_decay": log_uniform(1e-5, 1e-3)}')
DROPOUT = '{"model.dropout_rate": uniform(0.0, 0.5)}'


def _experiment(directory, space: str) -> str:
  path = os.path.join(directory, "experiment.py")
  with open(path, "w") as f:
    f.write(EXPERIMENT.format(base=SEARCH_CI, space=space))
  return path


def _history(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_space_fails_at_once_on_bad_keys_and_values():
  config = config_lib.load_config(SEARCH_CI)
  with pytest.raises(ConfigError, match="Did you mean --config.optimizer.learning_rate"):
    space_lib.check({"optimizer.learnig_rate": space_lib.log_uniform(1e-3, 1e-1)}, config)
  with pytest.raises(ConfigError, match="needs low > 0"):
    space_lib.log_uniform(0.0, 1.0)
  with pytest.raises(ConfigError, match="is an integer"):
    space_lib.check({"model.base_channels": space_lib.uniform(4, 32)}, config)
  with pytest.raises(ConfigError, match="must be a number > 0"):
    space_lib.check({"optimizer.learning_rate": space_lib.choice(0.1, -0.1)}, config)
  assert space_lib.log_uniform(1e-4, 1e-2).grid_values() == pytest.approx([1e-4, 1e-3, 1e-2])
  assert space_lib.integer(8, 32, log=True).grid_values() == [8, 16, 32]
  space = space_lib.load(SEARCH_CI, config)
  assert set(space) == {"optimizer.learning_rate", "optimizer.weight_decay",
                        "model.dropout_rate", "model.base_channels"}
  assert space_lib.grid_size(space) == 4 * 3 * 3 * 4


class _PruneTrialOne(optuna.pruners.BasePruner):
  """Prunes trial 1 at its first epoch, nothing else (a deterministic pruner)."""

  def prune(self, study, trial) -> bool:
    return trial.number == 1


class _Compiles(logging.Handler):
  """Counts XLA compilations of the loop's train step (``jit(step)``)."""

  def __init__(self):
    super().__init__()
    self.count = 0

  def emit(self, record):
    self.count += record.getMessage().startswith("Compiling jit(step)")


@pytest.fixture(scope="module")
def lr_search(tmp_path_factory):
  """Two random trials differing in learning rate and weight decay; trial 1 pruned."""
  study_dir = str(tmp_path_factory.mktemp("lr_search") / "study")
  path = _experiment(os.path.dirname(study_dir), LR_WD)
  compiles, logger = _Compiles(), logging.getLogger("jax")
  logger.addHandler(compiles)
  jax.config.update("jax_log_compiles", True)
  try:
    result = run_search(path, study_dir, sampler="random", trials=2, pruner=_PruneTrialOne(),
                        log=lambda line: None)
  finally:
    jax.config.update("jax_log_compiles", False)
    logger.removeHandler(compiles)
  return study_dir, result, compiles.count


def test_trials_differing_in_lr_and_wd_compile_the_train_step_once(lr_search):
  study_dir, result, compiles = lr_search
  assert result["ran"] == 2 and result["compilations"] == 1
  assert compiles == 1
  rates = {t.params["optimizer.learning_rate"] for t in result["study"].trials}
  assert len(rates) == 2


def test_search_writes_table_plots_and_runnable_best_experiment(lr_search):
  study_dir, result, _ = lr_search
  assert result["counts"] == {"COMPLETE": 1, "PRUNED": 1}
  report = write_report(study_dir)
  with open(report["csv"]) as f:
    rows = list(csv.DictReader(f))
  assert [r["state"] for r in rows] == ["COMPLETE", "PRUNED"]
  with open(report["table"]) as f:
    assert len(f.read().splitlines()) == 2 + 2
  assert os.path.getsize(report["plots"]["optimization_history"]) > 10_000
  best = result["best"]
  # The objective is the best epoch's validation accuracy of the trial's own run.
  assert best.value == max(r["val_accuracy"] for r in _history(trial_dir(study_dir, best.number)))
  config = config_lib.load_config(report["best_experiment"])
  assert config.optimizer.learning_rate == best.params["optimizer.learning_rate"]
  with open(os.path.join(trial_dir(study_dir, best.number), "config.json")) as f:
    assert json.load(f)["optimizer"]["learning_rate"] == best.params["optimizer.learning_rate"]


def test_pruned_trial_workdir_says_it_was_pruned(lr_search):
  study_dir, _, _ = lr_search
  with open(os.path.join(trial_dir(study_dir, 1), "trial.json")) as f:
    record = json.load(f)
  assert record["state"] == "PRUNED" and record["epochs"] == 1
  assert [r["epoch"] for r in _history(trial_dir(study_dir, 1))] == [1]


def test_sigkill_mid_search_then_two_workers_finish_it_without_duplicates(tmp_path):
  path, study_dir = _experiment(str(tmp_path), DROPOUT), str(tmp_path / "study")
  args = ["search", "--config", path, "--study-dir", study_dir, "--sampler", "random",
          "--trials", "2", "--storage", "journal", "--config.train.checkpoint_every_steps=2"]
  proc = subprocess.Popen([sys.executable, "-m", "cnn_jax", *args], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  checkpoints, deadline, killed = os.path.join(trial_dir(study_dir, 0), "checkpoints"), \
      time.time() + 120, False
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(checkpoints) and any(d.isdigit() for d in os.listdir(checkpoints)):
      proc.send_signal(signal.SIGKILL)
      killed = True
      break
    time.sleep(0.02)
  proc.wait()
  assert killed, "the search finished before it could be killed"
  done = run_cli(*args, "--workers", "2")
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  ran = [int(line.split(" ran ")[1].split()[0]) for line in done.stdout.splitlines()
         if " ran " in line]
  assert len(ran) == 2 and sum(ran) == 2  # two processes, each trial run by one of them
  trials = load_study(study_dir)[0].trials
  assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE"), (1, "COMPLETE")]
  assert trials[0].user_attrs["resumed_from"] > 0  # continued from its checkpoint
  assert trials[1].user_attrs["resumed_from"] == 0
  for t in trials:
    assert [r["epoch"] for r in _history(trial_dir(study_dir, t.number))] == [1, 2]
  assert sorted(os.listdir(os.path.join(study_dir, "trials"))) == ["0000", "0001"]
