"""Test setup: 8 fake CPU devices for every test (set before jax is imported)."""

import os
import sys

# The suite's programs are tiny and run a few steps, so compiling dominates: XLA:CPU's backend
# optimizations are turned off for them, as for every run's initial state (train/session.py).
# The whole suite takes about a third less time; properties the tests check (bitwise resume,
# equality to a reference to 1e-5, learning) hold either way. Set
# --xla_backend_optimization_level in XLA_FLAGS yourself to test optimized programs.
_FLAGS = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _FLAGS:
  _FLAGS += " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = (_FLAGS + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One persistent compilation cache for the whole session, shared with the pytest-xdist
# workers and the subprocesses the CLI tests start (they inherit the environment): the same
# programs (e.g. a run and its resumed copy) compile only once.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  import tempfile
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="cnn_jax_test_jit_")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"


# The longest test files, scheduled first: the README's command runs the files on two
# pytest-xdist workers (``-n 2 --dist loadfile``), and a long file started last would leave
# one core idle at the end.
LONGEST_FIRST = ("test_resume.py", "test_search.py", "test_distributed.py", "test_convert.py",
                 "test_gan_tasks.py", "test_transfer.py", "test_compare.py",
                 "test_segmentation_task.py", "test_detection_task.py", "test_faults.py",
                 "test_models_inception.py", "test_autoencoder_tasks.py")


def pytest_collection_modifyitems(config, items):
  """Moves the files of :data:`LONGEST_FIRST` to the front, in that order (stable)."""
  del config
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))


def pytest_sessionfinish(session, exitstatus):
  """Removes the session's compilation cache (it is only useful within one run)."""
  del session, exitstatus
  if _OWN_CACHE:
    import shutil
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("CNN_JAX_DATA_DIR") or os.path.join(os.path.dirname(REPO), "shared",
                                                                  "data")


@pytest.fixture
def shared_data() -> str:
  """The directory of the offline .npz datasets; skips when it is not there."""
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f"shared datasets not found at {SHARED_DATA}")
  return SHARED_DATA


def digits_config(**overrides):
  """The default experiment, shrunk for tests (a few epochs, one device, no progress bar)."""
  sys.path.insert(0, REPO)
  from cnn_jax import config as config_lib
  config = config_lib.load_config(os.path.join(REPO, "experiments", "digits_lenet5.py"))
  config.train.epochs = 2
  config.train.num_devices = 1
  config.train.progress = False
  config_lib.apply_overrides(config, [f"{k}={v}" for k, v in overrides.items()])
  return config


def run_cli(*args, env=None, timeout=300):
  """Runs ``python -m cnn_jax ARGS`` in a subprocess; returns the CompletedProcess."""
  import subprocess
  return subprocess.run([sys.executable, "-m", "cnn_jax", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def cli(*args):
  """Runs the command line ``python -m cnn_jax ARGS`` in this process (``cnn_jax.main.main``,
  exit code and all; no interpreter start-up): a CompletedProcess with its stdout and
  stderr. Use :func:`run_cli` where a separate process matters (kill tests, environment)."""
  import contextlib
  import io
  import subprocess
  from absl import logging as absl_logging
  from cnn_jax.main import main
  out, err, verbosity = io.StringIO(), io.StringIO(), absl_logging.get_verbosity()
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      main(list(args))
  except SystemExit as exit_:
    code = exit_.code
  finally:
    absl_logging.set_verbosity(verbosity)  # main() silences absl for the whole process
  return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
