"""Inputs checked up front: config values, the workdir, npz files, and the CLI's last resort."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, digits_config
from cnn_jax import config as config_lib
from cnn_jax.data.sources import read_npz
from cnn_jax.errors import CnnJaxError, ConfigError, DataError
from cnn_jax.train import workdir as workdir_lib
from cnn_jax.train.logging import Progress


@pytest.mark.parametrize("override,fragment", [
    ("train.epochs=0", "train.epochs=0 is not allowed: it must be an integer >= 1"),
    ("train.epochs=-3", "train.epochs=-3"),
    ("train.batch_size=-32", "train.batch_size=-32"),
    ("train.batch_size=0", "train.batch_size=0"),
    ("train.eval_batch_size=0", "train.eval_batch_size=0"),
    ("optimizer.learning_rate=-0.003", "a number > 0"),
    ("optimizer.weight_decay=-1.0", "a number >= 0"),
    ("model.dtype=float17", "'float17' is not allowed: it must be one of float32, bfloat16"),
    ("train.best_mode=maximum", "'maximum' is not allowed: it must be 'min', 'max'"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints=0"),
    ("train.log_every_steps=0", "train.log_every_steps=0"),
    ("train.checkpoint_every_steps=-5", "an integer >= 0"),
    ("dataset.val_fraction=0.0", "dataset.val_fraction=0.0 is not allowed: it must be a fraction "
                                 "in (0, 1) or a number of examples >= 1"),
    ("dataset.val_fraction=1.5", "dataset.val_fraction=1.5"),
    ("dataset.test_fraction=1.0", "a fraction in [0, 1)"),
])
def test_validate_names_key_value_and_allowed(override, fragment):
  config = digits_config()
  config_lib.apply_overrides(config, [override])
  with pytest.raises(ConfigError, match="--config." + override.split("=")[0]) as error:
    config_lib.validate(config)
  assert fragment in str(error.value) and "\n" not in str(error.value)


def test_validate_accepts_the_experiments():
  """Including fashion_mnist_cnn's val_fraction=5000 (a count) and test_fraction=0.0."""
  for name in sorted(os.listdir(os.path.join(REPO, "experiments"))):
    if name.endswith(".py") and not name.startswith("_"):
      config_lib.validate(config_lib.load_config(os.path.join(REPO, "experiments", name)))
  config = digits_config()
  config.dataset.val_fraction = 100.0  # neither a fraction nor a count
  with pytest.raises(ConfigError, match="dataset.val_fraction=100.0"):
    config_lib.validate(config)


def test_failed_first_run_does_not_block_the_corrected_config(tmp_path):
  workdir = str(tmp_path / "run")
  wrong = digits_config()
  config_lib.apply_overrides(wrong, ["model.name=lenet6"])
  workdir_lib.check_writable(workdir)
  workdir_lib.check_config(wrong, workdir)
  workdir_lib.save_config(wrong, workdir)  # as if setup had failed after writing it
  fixed = digits_config()
  workdir_lib.check_config(fixed, workdir)  # no checkpoints: any config is welcome
  path = workdir_lib.save_config(fixed, workdir)
  assert json.load(open(path))["model"]["name"] == "lenet5"
  with pytest.raises(ConfigError, match="train.epochs=0"):  # values are validated too
    workdir_lib.check_config(digits_config(**{"train.epochs": 0}), workdir)
  os.makedirs(os.path.join(workdir, "checkpoints", "39"))
  with pytest.raises(ConfigError, match="changed: model.name"):
    workdir_lib.check_config(wrong, workdir)
  workdir_lib.check_config(fixed, workdir)
  assert sorted(os.listdir(workdir)) == ["checkpoints", "config.json"]  # no temporary files


def test_atomic_writes_leave_old_file_on_failure(tmp_path):
  path = str(tmp_path / "splits.npz")
  with config_lib.atomic_write(path, "wb") as f:
    np.savez(f, train=np.arange(5), val=np.arange(2))
  with pytest.raises(TypeError):
    with config_lib.atomic_write(path, "wb") as f:
      f.write(b"half a file")
      raise TypeError("killed mid-write")
  np.testing.assert_array_equal(read_npz(path)["train"], np.arange(5))
  assert os.listdir(tmp_path) == ["splits.npz"]


def test_probe_write_fails_before_training(tmp_path):
  """A file-size limit (``ulimit -f``; the probe is what a nearly full disk refuses)."""
  script = f"""
import resource
from cnn_jax.errors import CnnJaxError
from cnn_jax.train.workdir import check_writable
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
try:
  check_writable({str(tmp_path / "run")!r})
except CnnJaxError as e:
  print(e)
"""
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                        text=True, timeout=60)
  assert proc.stdout.startswith(f"Cannot write to {tmp_path / 'run'}: File too large."), (
      proc.stdout + proc.stderr)
  assert os.listdir(tmp_path / "run") == []  # the probe is removed


@pytest.mark.parametrize("content,fragment", [
    (os.urandom(256), "is not an .npz archive"),
    (b"", "it is empty"),
    (b"PK\x03\x04 definitely not a zip file", "corrupt or truncated .npz"),
])
def test_read_npz_says_what_is_wrong(tmp_path, content, fragment):
  path = tmp_path / "data.npz"
  path.write_bytes(content)
  with pytest.raises(DataError, match=fragment) as error:
    read_npz(str(path))
  assert "allow_pickle" not in str(error.value) and "unsafe" not in str(error.value)


def test_read_npz_refuses_object_arrays(tmp_path):
  path = str(tmp_path / "objects.npz")
  np.savez(path, x_train=np.array([{"a": 1}], dtype=object))
  with pytest.raises(DataError, match="array 'x_train' holds Python objects") as error:
    read_npz(path)
  assert "allow_pickle" not in str(error.value)


def test_cli_oserror_is_one_line(tmp_path):
  """An OSError that no library code turned into a message still gives one line."""
  script = ("import sys; from cnn_jax import main; "
            "main.run = lambda argv: open(sys.argv[1] + '/no/such/dir/file', 'w'); main.main([])")
  proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2
  assert proc.stderr == f"error: {tmp_path}/no/such/dir/file: No such file or directory\n"


def test_progress_shows_the_given_metrics(capsys):
  progress = Progress(total=10, initial=0, enabled=True)
  progress.update(5, 32, {"d_loss": 0.5, "g_loss": 1.25, "fid": 3.0, "extra": 9.0})
  postfix = progress.bar.postfix
  progress.close()
  assert "d_loss=0.5" in postfix and "g_loss=1.25" in postfix and "fid=3" in postfix
  assert "extra" not in postfix and "img_s=" in postfix
  with pytest.raises(CnnJaxError):  # a path that is a file is refused before any work
    workdir_lib.check_writable(__file__)
