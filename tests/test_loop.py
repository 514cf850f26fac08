"""The task-neutral loop: the NaN guard at mid-epoch saves, one "best" for checkpoint,
curves and diagnosis, resume messages, and a restore into different networks."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cnn_jax import config as config_lib
from cnn_jax.errors import CnnJaxError, NonFiniteError
from cnn_jax.evaluate.run import evaluate_run
from cnn_jax.experiment import train
from cnn_jax.train.logging import read_history
from conftest import REPO, digits_config


def _kept_steps(workdir) -> list[int]:
  root = os.path.join(workdir, "checkpoints")
  return sorted(int(d) for d in os.listdir(root) if d.isdigit()) if os.path.isdir(root) else []


def test_nan_mid_epoch_never_becomes_a_checkpoint(tmp_path):
  config = digits_config(**{"train.checkpoint_every_steps": 3, "model.act": "relu",
                            "optimizer.name": "sgd", "optimizer.learning_rate": 100.0,
                            "train.epochs": 4})
  with pytest.raises(NonFiniteError) as error:
    train(config, str(tmp_path))
  message = str(error.value)
  kept = _kept_steps(tmp_path)
  if kept:
    assert f"step {kept[-1]}" in message
  else:
    assert "no checkpoint was kept" in message.lower()
  for step in kept:  # every kept checkpoint holds finite numbers only
    state = ocp.StandardCheckpointer().restore(os.path.join(tmp_path, "checkpoints", str(step),
                                                            "state"))
    for leaf in jax.tree.leaves(state["nets"]):
      assert np.all(np.isfinite(leaf)), step


def test_best_checkpoint_is_the_one_the_diagnosis_names(tmp_path):
  config = digits_config(**{"train.epochs": 5, "train.keep_checkpoints": 1})
  results = train(config, str(tmp_path))
  diagnosis = results["diagnosis"]
  advice = " ".join(diagnosis.advice)
  kept = _kept_steps(tmp_path)
  best = [s for s in kept if f"step {s} " in advice]
  assert len(best) == 1, (advice, kept)  # names exactly one checkpoint, and it exists
  evaluated = evaluate_run(str(tmp_path), checkpoint="best", split="val")
  assert evaluated["checkpoint_step"] == best[0]
  rows = {r["step"]: r for r in read_history(str(tmp_path))}
  best_value = max(r["val_accuracy"] for r in rows.values())
  assert rows[best[0]]["val_accuracy"] == best_value  # by the primary metric
  assert evaluated["accuracy"] == pytest.approx(best_value)


def test_rerun_of_a_finished_run_says_so_and_does_not_retrain(tmp_path, capsys):
  config = digits_config(**{"train.epochs": 1})
  first = train(config, str(tmp_path))
  capsys.readouterr()
  again = train(config, str(tmp_path))
  assert again["already_complete"] and again["steps"] == first["steps"]
  assert again["test"]["accuracy"] == first["test"]["accuracy"]
  captured = capsys.readouterr()
  assert "is complete" in captured.out + captured.err


def test_resume_into_different_networks_fails_clearly(tmp_path):
  config = digits_config(**{"train.epochs": 1})
  train(config, str(tmp_path))
  other = config_lib.load_config(os.path.join(REPO, "experiments",
                                              "mnist_conv_autoencoder.py:digits"))
  from cnn_jax.train.session import checkpoints_for, setup
  session = setup(other, None)
  checkpoints = checkpoints_for(session, str(tmp_path), read_only=True)
  with pytest.raises(CnnJaxError, match="networks|structure|different"):
    checkpoints.restore(session.state)
  checkpoints.close()
  assert _kept_steps(tmp_path)  # nothing was moved aside
