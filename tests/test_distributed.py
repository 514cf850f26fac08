"""Two local processes x 2 CPU devices train exactly like one process with 4 devices."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from conftest import REPO

ARGS = ["train", "--config", os.path.join(REPO, "experiments", "digits_simple_cnn.py"),
        "--config.train.epochs=2", "--config.dataset.train_subset=512",
        "--config.train.progress=false"]


def _env(devices: int) -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _history(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_two_processes_match_one_process(tmp_path):
  single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
  ref = subprocess.run([sys.executable, "-m", "cnn_jax", *ARGS, "--workdir", single],
                       cwd=REPO, env=_env(4), capture_output=True, text=True, timeout=600)
  assert ref.returncode == 0, ref.stderr[-3000:]

  port = _free_port()
  procs = [subprocess.Popen([sys.executable, "-m", "cnn_jax", *ARGS, "--workdir", multi,
                             "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                             "--process-id", str(i)], cwd=REPO, env=_env(2),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]

  a, b = _history(single), _history(multi)
  assert len(a) == len(b) == 2
  for row_a, row_b in zip(a, b):
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
      np.testing.assert_allclose(row_b[key], row_a[key], rtol=1e-5, err_msg=key)
  with open(os.path.join(single, "eval", "test.json")) as f:
    test_a = json.load(f)
  with open(os.path.join(multi, "eval", "test.json")) as f:
    test_b = json.load(f)
  np.testing.assert_allclose(test_b["loss"], test_a["loss"], rtol=1e-5)
  assert test_b["confusion_matrix"] == test_a["confusion_matrix"]
