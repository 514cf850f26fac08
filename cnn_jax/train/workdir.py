"""The run directory: writable before any work, one config per run, atomic files.

The loop calls :func:`check_writable` and :func:`check_config` before it loads data or
compiles anything, and :func:`save_config` once setup has succeeded, so a command that
fails early (a typo in the model name, a full disk) leaves nothing that blocks the
corrected command.
"""

import os

import ml_collections

from cnn_jax import config as config_lib
from cnn_jax.errors import CnnJaxError, ConfigError

CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
# Folders the run writes into; each existing one is probed (a read-only mount, a full disk).
OUTPUT_DIRS = (CHECKPOINTS_DIR, "tensorboard", "eval")
PROBE_BYTES = 1 << 20  # a probe this large fails on a nearly full disk, not only a full one


def _probe(directory: str) -> None:
  """Writes, syncs and removes ``PROBE_BYTES`` in ``directory``; raises CnnJaxError."""
  path = os.path.join(directory, f".write_probe.{os.getpid()}")
  try:
    with open(path, "wb") as f:
      f.write(bytes(PROBE_BYTES))
      f.flush()
      os.fsync(f.fileno())
  except OSError as e:
    raise CnnJaxError(f"Cannot write to {directory}: {e.strerror}. Free disk space or "
                      "choose a writable --workdir.") from None
  finally:
    if os.path.exists(path):
      os.remove(path)


def check_writable(workdir: str) -> None:
  """Creates ``workdir`` if needed and checks that it and its output folders take writes.

  Raises:
    CnnJaxError: naming the path, if it is a file, cannot be created or refuses a write.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise CnnJaxError(f"--workdir {workdir} is a file, not a directory; choose another path.")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise CnnJaxError(f"Cannot create --workdir {e.filename or workdir}: {e.strerror}.") from None
  _probe(workdir)
  for name in OUTPUT_DIRS:
    path = os.path.join(workdir, name)
    if os.path.exists(path) and not os.path.isdir(path):
      raise CnnJaxError(f"{path} is a file, but the run needs a directory there; move it away.")
    if os.path.isdir(path):
      _probe(path)


def has_checkpoints(workdir: str) -> bool:
  """Whether ``workdir/checkpoints`` holds a finished step (a folder named by a number)."""
  directory = os.path.join(workdir, CHECKPOINTS_DIR)
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def check_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Validates ``config`` (:func:`cnn_jax.config.validate`) and refuses it if ``workdir``
  holds checkpoints of a run with a different config.

  A workdir without checkpoints (a run that failed before saving anything) takes any
  config; :func:`save_config` then replaces its ``config.json``.
  """
  config_lib.validate(config)
  path = os.path.join(workdir, CONFIG_FILE)
  if not (os.path.exists(path) and has_checkpoints(workdir)):
    return
  old_flat = config_lib.flat_items(config_lib.to_dict(config_lib.load_json(path)))
  new_flat = config_lib.flat_items(config_lib.to_dict(config))
  changed = sorted(k for k in old_flat.keys() | new_flat.keys()
                   if old_flat.get(k) != new_flat.get(k))
  if changed:
    raise ConfigError(
        f"{workdir} already holds checkpoints of a run with a different config (changed: "
        f"{', '.join(changed[:8])}). Resuming would mix two experiments; use a new "
        "--workdir, or repeat the original command to resume.")


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes ``workdir/config.json`` atomically; returns its path."""
  path = os.path.join(workdir, CONFIG_FILE)
  config_lib.save_json(config, path)
  return path
