"""Fault injection: damaged checkpoints, NaN states, unwritable disks, TensorBoard on resume.

The acceptance test kills a run (SIGKILL) once a mid-run checkpoint exists, damages the
newest step in one of four ways and reruns the same config: the damaged step must be moved
to ``checkpoints/corrupt/`` and the run must end bitwise equal to an uninterrupted one.
"""

import glob
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import REPO, digits_config
from cnn_jax.errors import CnnJaxError, ConfigError, NonFiniteError
from cnn_jax.train.checkpoint import Checkpoints
from cnn_jax.train.logging import MetricsLog, read_history

SETTINGS = {"train.epochs": 3, "train.checkpoint_every_steps": 10}  # 39 steps per epoch
KILL_AT_STEP = 50  # in epoch 2, after the epoch-1 checkpoint


def _steps(workdir: str) -> list[int]:
  root = os.path.join(workdir, "checkpoints")
  return sorted(int(d) for d in os.listdir(root) if d.isdigit()) if os.path.isdir(root) else []


def _train(workdir: str) -> None:
  import cnn_jax
  cnn_jax.train(digits_config(**SETTINGS), workdir)


def _final_leaves(workdir: str) -> list[np.ndarray]:
  path = os.path.join(workdir, "checkpoints", str(max(_steps(workdir))), "state")
  return jax.tree.leaves(ocp.StandardCheckpointer().restore(path))


def _history(workdir: str) -> list[dict]:
  return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in read_history(workdir)]


def read_events(workdir: str) -> dict[tuple[str, str], dict[int, float]]:
  """``{(run, tag): {step: value}}`` from ``workdir/tensorboard``, read as TensorBoard does:
  files in name order, a ``SessionLog.START`` at step ``s`` drops the run's values at
  steps ``>= s`` read before it."""
  from tensorboardX.proto.event_pb2 import Event, SessionLog
  scalars = {}
  for run_dir in sorted(glob.glob(os.path.join(workdir, "tensorboard", "*"))):
    run = os.path.basename(run_dir)
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
      with open(path, "rb") as f:
        raw = f.read()
      offset = 0
      while offset < len(raw):  # records: u64 length, u32 crc, data, u32 crc
        (length,) = struct.unpack("<Q", raw[offset:offset + 8])
        event = Event.FromString(raw[offset + 12:offset + 12 + length])
        offset += 16 + length
        if event.session_log.status == SessionLog.START:
          for (r, _), values in scalars.items():
            if r == run:
              for step in [s for s in values if s >= event.step]:
                del values[step]
        for value in event.summary.value:
          scalars.setdefault((run, value.tag), {})[event.step] = value.simple_value
  return scalars


def assert_events_match_history(workdir: str) -> None:
  expected = {}
  for row in read_history(workdir):
    for key, value in row.items():
      if key in ("epoch", "step"):
        continue
      run, tag = ("val", key[4:]) if key.startswith("val_") else (
          ("train", key[6:]) if key.startswith("train_") else ("train", key))
      expected.setdefault((run, tag), {})[row["step"]] = float(np.float32(value))
  assert read_events(workdir) == expected


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
  """An uninterrupted run."""
  workdir = str(tmp_path_factory.mktemp("reference") / "run")
  _train(workdir)
  return workdir


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> str:
  """The same run started on the command line and SIGKILLed once step KILL_AT_STEP exists."""
  workdir = str(tmp_path_factory.mktemp("killed") / "run")
  overrides = [f"--config.{k}={v}" for k, v in
               {**SETTINGS, "train.num_devices": 1, "train.progress": "false"}.items()]
  proc = subprocess.Popen(
      [sys.executable, "-m", "cnn_jax", "train", "--workdir", workdir, "--config",
       os.path.join(REPO, "experiments", "digits_lenet5.py"), *overrides],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  deadline = time.time() + 300
  while proc.poll() is None and time.time() < deadline:
    if _steps(workdir) and max(_steps(workdir)) >= KILL_AT_STEP:
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.01)
  out, _ = proc.communicate()
  assert proc.returncode == -signal.SIGKILL, out.decode()[-3000:]
  return workdir


def _largest_data_file(step_dir: str) -> str:
  files = glob.glob(os.path.join(step_dir, "state", "ocdbt.process_0", "d", "*"))
  return max(files, key=os.path.getsize)


def _truncate(step_dir: str) -> None:
  path = _largest_data_file(step_dir)
  os.truncate(path, os.path.getsize(path) // 2)


def _delete_metadata(step_dir: str) -> None:
  os.remove(os.path.join(step_dir, "state", "_METADATA"))


def _garbage(step_dir: str) -> None:
  with open(os.path.join(step_dir, "data", "metadata"), "wb") as f:
    f.write(np.random.default_rng(0).bytes(64))


def _flip_bytes(step_dir: str) -> None:
  path = _largest_data_file(step_dir)
  data = bytearray(open(path, "rb").read())
  middle = len(data) // 2
  data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
  with open(path, "wb") as f:
    f.write(data)


@pytest.mark.parametrize("damage", [_truncate, _delete_metadata, _garbage, _flip_bytes],
                         ids=["truncate", "delete_metadata", "garbage", "flip_16_bytes"])
def test_damaged_checkpoint_is_set_aside_and_run_matches(reference, killed, tmp_path, damage,
                                                         caplog):
  workdir = str(tmp_path / "run")
  shutil.copytree(killed, workdir)
  newest = max(_steps(workdir))
  damage(os.path.join(workdir, "checkpoints", str(newest)))
  with caplog.at_level(logging.WARNING, logger="cnn_jax.train.checkpoint"):
    _train(workdir)
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "corrupt", str(newest)))
  assert f"checkpoint step {newest} is unreadable" in caplog.text
  assert "bound method" not in caplog.text
  for a, b in zip(_final_leaves(reference), _final_leaves(workdir), strict=True):
    np.testing.assert_array_equal(a, b)
  assert _history(workdir) == _history(reference)
  assert_events_match_history(workdir)


# ---------------------------------------------------------------- Checkpoints, directly

def _state(seed: int = 0) -> dict:
  """A small state of random (incompressible) values."""
  kernel = jax.random.normal(jax.random.key(seed), (64, 64))
  return {"params": {"kernel": kernel}, "opt_state": {"mu": jnp.zeros(3)}, "step": jnp.int32(0)}


def test_nonfinite_state_is_refused(tmp_path):
  checkpoints = Checkpoints(str(tmp_path / "ckpt"), keep=2)
  bad = _state()
  bad["opt_state"]["mu"] = bad["opt_state"]["mu"].at[1].set(jnp.inf)
  with pytest.raises(NonFiniteError, match="in opt_state; .* No checkpoint was kept"):
    checkpoints.save(5, bad, {}, {})
  checkpoints.save(10, _state(), {}, {})
  checkpoints.wait()
  bad["params"]["kernel"] = bad["params"]["kernel"].at[0, 0].set(jnp.nan)
  with pytest.raises(NonFiniteError, match=r"in opt_state, params; .*step 10, is finite"):
    checkpoints.save(15, bad, {}, {})
  checkpoints.wait()
  assert checkpoints.steps() == [10]
  checkpoints.close()


@pytest.mark.parametrize("mode,best", [("max", 20), ("min", 30)])
def test_best_step_survives_restart(tmp_path, mode, best):
  directory = str(tmp_path / "ckpt")
  checkpoints = Checkpoints(directory, keep=2, best_mode=mode)
  for step, accuracy in [(10, 0.5), (20, 0.9), (25, None), (30, 0.4), (35, None), (40, 0.6),
                         (45, None)]:
    checkpoints.save(step, _state(), {"next_index": step}, {},
                     None if accuracy is None else {"val_accuracy": accuracy})
  checkpoints.close()
  checkpoints = Checkpoints(directory, keep=2, best_mode=mode)
  assert checkpoints.best_step() == best
  assert checkpoints.steps() == sorted({best, 40, 45})
  checkpoints.close()


def test_unknown_best_metric_fails_at_first_epoch(tmp_path):
  checkpoints = Checkpoints(str(tmp_path / "ckpt"), best_metric="val_f1")
  with pytest.raises(ConfigError, match="val_f1.*val_accuracy, val_loss"):
    checkpoints.save(10, _state(), {}, {}, {"val_accuracy": 0.5, "val_loss": 1.0})
  checkpoints.close()


def test_bit_flip_fails_its_checksum(tmp_path, caplog):
  directory = str(tmp_path / "ckpt")
  checkpoints = Checkpoints(directory, keep=3)
  checkpoints.save(1, _state(1), {"next_index": 1}, {})
  checkpoints.save(2, _state(2), {"next_index": 2}, {})
  checkpoints.wait()
  _flip_bytes(os.path.join(directory, "2"))
  with caplog.at_level(logging.WARNING, logger="cnn_jax.train.checkpoint"):
    state, data_state, _, step = checkpoints.restore(_state())
  assert "do not match the checksums" in caplog.text
  assert step == 1 and data_state == {"next_index": 1}
  np.testing.assert_array_equal(state["params"]["kernel"], _state(1)["params"]["kernel"])
  checkpoints.save(2, _state(2), {"next_index": 2}, {})  # the step number is free again
  checkpoints.wait()
  assert checkpoints.steps() == [1, 2] and os.listdir(os.path.join(directory, "corrupt")) == ["2"]
  checkpoints.close()


def test_disk_errors_are_one_line(tmp_path):
  """A save into a file-size limit (``ulimit -f``, EFBIG) gives one line naming the path."""
  script = f"""
import resource, sys
import jax, jax.numpy as jnp
from cnn_jax.errors import CnnJaxError
from cnn_jax.train.checkpoint import Checkpoints
checkpoints = Checkpoints({str(tmp_path / "ckpt")!r})
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
  checkpoints.save(1, {{"w": jax.random.normal(jax.random.key(0), (100000,))}}, {{}}, {{}})
  checkpoints.wait()
except CnnJaxError as e:
  print(e)
"""
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                        text=True, timeout=120)
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 1 and "File too large" in lines[0], proc.stdout + proc.stderr[-2000:]
  assert str(tmp_path / "ckpt") in lines[0]


def test_metrics_log_events_after_resume(tmp_path):
  """Rows past the resume step are dropped from metrics.jsonl and from TensorBoard alike."""
  workdir = str(tmp_path)
  log = MetricsLog(workdir, resume_step=0)
  for step in (10, 20, 30):
    log.write({"epoch": step // 10, "step": step, "train_loss": 1.0 / step,
               "val_accuracy": step / 100, "learning_rate": 0.1})
  log.close()
  log = MetricsLog(workdir, resume_step=20)  # killed after row 30, checkpoint 20 kept
  log.write({"epoch": 3, "step": 30, "train_loss": 0.5, "val_accuracy": 0.25,
             "learning_rate": 0.1})
  log.close()
  assert [row["train_loss"] for row in read_history(workdir)] == [0.1, 0.05, 0.5]
  events = read_events(workdir)
  assert set(events) == {("train", "loss"), ("val", "accuracy"), ("train", "learning_rate")}
  assert events[("train", "loss")] == {10: np.float32(0.1), 20: np.float32(0.05), 30: 0.5}
  assert_events_match_history(workdir)


def test_check_writable(tmp_path):
  from cnn_jax.train.workdir import check_writable
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  with pytest.raises(CnnJaxError, match="is a file"):
    check_writable(str(a_file))
  with pytest.raises(CnnJaxError, match="Cannot create --workdir .*a_file"):
    check_writable(str(a_file / "run"))
  check_writable(str(tmp_path / "new" / "run"))
  assert os.listdir(tmp_path / "new" / "run") == []
