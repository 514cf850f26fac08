"""Bad input gets one clear message, a non-zero exit, and loses nothing already written."""

import os

import numpy as np
import pytest

from conftest import REPO, cli, run_cli

DIGITS = os.path.join(REPO, "experiments", "digits_lenet5.py")
FAST = ["--config.train.epochs=1", "--config.train.progress=false", "--config.train.num_devices=1"]


def _assert_clean_error(proc, *fragments):
  assert proc.returncode == 2, proc.stdout + proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr
  assert proc.stderr.startswith("error: ")
  for fragment in fragments:
    assert fragment in proc.stderr, proc.stderr


def test_cli_errors(tmp_path):
  """Several bad inputs; the first in its own process (the real exit code and stderr)."""
  cases = [
      (["--config.model.name=resnet9000"], ["Unknown model 'resnet9000'"]),
      (["--config.optimizer.learnin_rate=0.1"], ["--config.optimizer.learning_rate"]),
      (["--config.dataset.name=digitz"], ["Unknown dataset 'digitz'", "'digits'"]),
      (["--config.dataset.image_size=28"], ["[B, 32, 32, C], got [1, 28, 28, 1]",
                                            "dataset.image_size=32"]),
      (["--config.optimizer.name=adamm"], ["Unknown optimizer.name 'adamm'"]),
  ]
  for i, (overrides, fragments) in enumerate(cases):
    command = run_cli if i == 0 else cli
    proc = command("train", "--config", DIGITS, "--workdir", str(tmp_path / f"w{i}"), *FAST,
                   *overrides)
    _assert_clean_error(proc, *fragments)


def _npz_config(tmp_path, file_text: str) -> str:
  """An experiment that reads dataset.file from an npz."""
  path = tmp_path / "npz_exp.py"
  path.write_text(f'''
from importlib.machinery import SourceFileLoader
base = SourceFileLoader("base", {DIGITS!r}).load_module()
def get_config():
  c = base.get_config()
  c.dataset.name = "npz"
  c.dataset.file = {file_text!r}
  c.dataset.data_dir = {str(tmp_path)!r}
  c.dataset.test_fraction = 0.0
  return c
''')
  return str(path)


@pytest.mark.parametrize("kind", ["missing", "corrupt", "no_keys", "bad_shape"])
def test_bad_npz(tmp_path, kind):
  target = tmp_path / "data.npz"
  if kind == "corrupt":
    target.write_bytes(b"PK\x03\x04 definitely not a zip file")
  elif kind == "no_keys":
    np.savez(target, images=np.zeros((4, 8, 8, 1), np.uint8))
  elif kind == "bad_shape":
    np.savez(target, x_train=np.zeros((4, 8, 8, 2, 5), np.uint8), y_train=np.zeros(4, np.uint8))
  expected = {"missing": "not found", "corrupt": "corrupt", "no_keys": "has no array x_train",
              "bad_shape": "must have shape [N, H, W, C]"}[kind]
  proc = cli("train", "--config", _npz_config(tmp_path, "data.npz"), "--workdir",
             str(tmp_path / "w"), *FAST)
  _assert_clean_error(proc, expected)


def test_error_keeps_existing_run(tmp_path):
  """A failing command on a finished workdir leaves its checkpoints, logs and config intact."""
  workdir = str(tmp_path / "run")
  proc = cli("train", "--config", DIGITS, "--workdir", workdir, *FAST)
  assert proc.returncode == 0, proc.stderr[-2000:]
  before = {}
  for root, _, files in os.walk(workdir):
    for f in files:
      path = os.path.join(root, f)
      if "tensorboard" not in path:
        before[path] = open(path, "rb").read()
  # A different config on the same workdir is refused, as is a bad override.
  proc = cli("train", "--config", DIGITS, "--workdir", workdir, *FAST,
             "--config.optimizer.learning_rate=0.5")
  _assert_clean_error(proc, "different config", "optimizer.learning_rate")
  proc = cli("train", "--config", DIGITS, "--workdir", workdir, *FAST,
             "--config.model.nme=nope")
  _assert_clean_error(proc, "Unknown config key --config.model.nme")
  for path, content in before.items():
    assert open(path, "rb").read() == content, f"{path} changed"
