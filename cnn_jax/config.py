"""Experiment configs: Python files with ``get_config()``, ``--config.a.b=value`` overrides.

An override must name an existing key (a misspelling fails at once, listing the
closest valid keys) and its value is parsed to the type of the value it replaces.
:func:`validate` checks the values before any work starts.
"""

import ast
import contextlib
import difflib
import importlib.util
import json
import os
import tempfile

import ml_collections

from cnn_jax.errors import ConfigError

REQUIRED_SECTIONS = ("dataset", "model", "optimizer", "schedule", "train")

# Every key the train loop reads from ``config.train``, with its default.
TRAIN_DEFAULTS = {
    "epochs": 10,
    "batch_size": 128,               # global batch, split over all devices
    "eval_batch_size": 512,
    "label_smoothing": 0.0,
    "num_devices": 0,                # 0: every device
    "on_device_data": False,         # True: the train split stays on the device, gathered in jit
    "checkpoint_every_steps": 0,     # 0: at the end of every epoch only
    "keep_checkpoints": 2,           # the last K, plus the best by best_metric
    "best_metric": "auto",           # auto: the task's primary metric (e.g. val_accuracy)
    "best_mode": "auto",             # max | min | auto (the task's, or min for losses)
    "log_every_steps": 20,
    "progress": True,
}


def train_section(**settings) -> ml_collections.ConfigDict:
  """A complete ``train`` section: :data:`TRAIN_DEFAULTS` updated with ``settings``."""
  unknown = sorted(set(settings) - set(TRAIN_DEFAULTS))
  if unknown:
    raise ConfigError(f"Unknown train option(s) {', '.join(unknown)}; known: "
                      f"{', '.join(TRAIN_DEFAULTS)}.")
  return ml_collections.ConfigDict({**TRAIN_DEFAULTS, **settings})


def load_config(path: str) -> ml_collections.ConfigDict:
  """Imports the experiment file at ``path`` and returns its ``get_config()``.

  ``FILE.py:ARG`` calls ``get_config("ARG")``, e.g. ``experiments/mnist_anomaly.py:digits``
  for the CI-sized variant an experiment file offers.
  """
  arg = None
  if ".py:" in path:
    path, arg = path.rsplit(":", 1)
  if not os.path.isfile(path):
    here = os.path.dirname(path) or "."
    known = sorted(f for f in os.listdir(here) if f.endswith(".py")) if os.path.isdir(here) else []
    raise ConfigError(f"Config file {path!r} does not exist."
                      + (f" Files in {here}: {', '.join(known)}." if known else ""))
  spec = importlib.util.spec_from_file_location("_cnn_jax_experiment", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:
    raise ConfigError(f"Config file {path} failed to import: {type(e).__name__}: {e}") from None
  if not hasattr(module, "get_config"):
    raise ConfigError(f"Config file {path} has no get_config() function.")
  try:
    config = module.get_config() if arg is None else module.get_config(arg)
  except TypeError as e:
    raise ConfigError(f"{path}: get_config({arg!r}) failed ({e}); does the file take an "
                      "argument?") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict.")
  missing = [s for s in REQUIRED_SECTIONS if s not in config]
  if missing:
    raise ConfigError(f"{path}: config lacks the section(s) {', '.join(missing)}.")
  return config


def flat_items(config, prefix: str = "") -> dict:
  """``{"dataset.name": value, ...}`` for a ConfigDict or a nested plain dict."""
  items = {}
  for k, v in config.items():
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      items.update(flat_items(v, f"{prefix}{k}."))
    else:
      items[f"{prefix}{k}"] = v
  return items


def flat_keys(config: ml_collections.ConfigDict) -> list[str]:
  """All dotted leaf keys, e.g. ``["dataset.name", "optimizer.learning_rate", ...]``."""
  return list(flat_items(config))


def _parse_value(text: str, current, key: str):
  if isinstance(current, bool):
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
      return True
    if lowered in ("false", "0", "no"):
      return False
    raise ConfigError(f"--config.{key} expects true or false, got {text!r}.")
  if isinstance(current, (int, float)) and not isinstance(current, bool):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise ConfigError(f"--config.{key} expects a number, got {text!r}.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ConfigError(f"--config.{key} expects a number, got {text!r}.")
    if isinstance(current, int) and isinstance(value, float) and not value.is_integer():
      raise ConfigError(f"--config.{key} expects an integer, got {text!r}.")
    return type(current)(value)
  if isinstance(current, str):
    return text
  try:  # None, tuples, lists: a Python literal, else the plain string
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text
  return tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> None:
  """Applies ``["optimizer.learning_rate=3e-3", ...]`` in place; unknown keys raise."""
  valid = flat_keys(config)
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"Override {item!r} must look like --config.key=value.")
    key, text = item.split("=", 1)
    if key not in valid:
      close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
      hint = f" Did you mean {', '.join('--config.' + c for c in close)}?" if close else ""
      raise ConfigError(f"Unknown config key --config.{key}.{hint} Run with "
                        "--show-config to list every key.")
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    with node.ignore_type():
      node[leaf] = _parse_value(text, node[leaf], key)


def to_dict(config: ml_collections.ConfigDict) -> dict:
  """A JSON-ready plain dict (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w"):
  """Opens a temporary file next to ``path`` that replaces ``path`` once the block ends
  without an error, so a reader (or a run killed mid-write) sees the old file or the new
  one, never a partial one."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                             prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    os.chmod(tmp, 0o644)  # mkstemp's 0o600 would hide the file from other users
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def save_json(config: ml_collections.ConfigDict, path: str) -> None:
  """Writes ``config`` as JSON to ``path`` atomically."""
  with atomic_write(path) as f:
    json.dump(to_dict(config), f, indent=2, sort_keys=True)


def load_json(path: str) -> ml_collections.ConfigDict:
  """Reads a saved ``config.json`` back into a ConfigDict."""
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except FileNotFoundError:
    raise ConfigError(f"{path} not found: is this the --workdir of a training run?") from None
  except json.JSONDecodeError as e:
    raise ConfigError(f"{path} is not valid JSON ({e}).") from None


# ``model.dtype`` names the models accept (compute dtype; parameters stay float32).
MODEL_DTYPES = ("float32", "bfloat16", "float16")


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _check(config: ml_collections.ConfigDict, key: str, ok, allowed: str) -> None:
  """Raises a ConfigError if ``config[key]`` (dotted, skipped when absent) fails ``ok``."""
  node = config
  for part in key.split("."):
    if part not in node:
      return
    node = node[part]
  if not ok(node):
    raise ConfigError(f"{key}={node!r} is not allowed: it must be {allowed}. Fix it in the "
                      f"config file or with --config.{key}=VALUE.")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the values the loop relies on before any work starts.

  Raises:
    ConfigError: naming the first invalid key, its value and what is allowed.
  """
  fraction_or_count = lambda low_ok: lambda v: (  # noqa: E731
      (_is_count(v) and (v >= 1 or (low_ok and v == 0)))
      or (_is_number(v) and (0 <= v < 1 if low_ok else 0 < v < 1)))
  checks = [
      ("train.epochs", lambda v: _is_count(v) and v >= 1, "an integer >= 1"),
      ("train.batch_size", lambda v: _is_count(v) and v >= 1, "an integer >= 1"),
      ("train.eval_batch_size", lambda v: _is_count(v) and v >= 1, "an integer >= 1"),
      ("train.keep_checkpoints", lambda v: _is_count(v) and v >= 1, "an integer >= 1"),
      ("train.log_every_steps", lambda v: _is_count(v) and v >= 1, "an integer >= 1"),
      ("train.checkpoint_every_steps", lambda v: _is_count(v) and v >= 0,
       "an integer >= 0 (0: at epoch ends only)"),
      ("train.max_steps", lambda v: _is_count(v) and v >= 0,
       "an integer >= 0 (0: train.epochs whole epochs)"),
      ("train.best_mode", lambda v: v in ("min", "max", "auto"), "'min', 'max' or 'auto'"),
      ("optimizer.learning_rate", lambda v: _is_number(v) and v > 0, "a number > 0"),
      ("optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
      ("model.dtype", lambda v: v in MODEL_DTYPES, f"one of {', '.join(MODEL_DTYPES)}"),
      ("dataset.val_fraction", fraction_or_count(False),
       "a fraction in (0, 1) or a number of examples >= 1"),
      ("dataset.test_fraction", fraction_or_count(True),
       "a fraction in [0, 1) or a number of examples >= 1"),
      ("dataset.split_seed", lambda v: v is None or (_is_count(v) and v >= 0),
       "an integer >= 0 (or None: the run's seed)"),
  ]
  for key, ok, allowed in checks:
    _check(config, key, ok, allowed)
