"""cnn_jax: convolutional networks in JAX/Flax.

Public API (``import cnn_jax`` imports nothing heavy; each function imports what it needs)::

  import cnn_jax
  config = cnn_jax.load_config("experiments/digits_lenet5.py", ["train.epochs=5"])
  results = cnn_jax.train(config, "runs/digits")        # resumes if runs/digits has checkpoints
  val = cnn_jax.evaluate("runs/digits", checkpoint="best", split="val")
  print(cnn_jax.summary("resnet50"))                     # layers, parameters, GFLOPs at 224x224
  model = cnn_jax.create_model("lenet5", num_classes=10)

``train`` and ``evaluate`` are also the names of the subpackages ``cnn_jax.train`` (the loop,
state, checkpoints) and ``cnn_jax.evaluate`` (diagnosis, report). So that
``cnn_jax.train(config, workdir)`` works before and after anything imports
``cnn_jax.train.loop``, those two subpackages are callable: calling one runs the
experiment function, and their modules stay reachable as before (``cnn_jax.train.loop``).
"""

import importlib
import sys
import types
from collections.abc import Sequence

__all__ = ["create_model", "evaluate", "list_models", "load_config", "summary", "train"]

# Imported on first access (PEP 562): name -> (module, attribute).
_LAZY = {"create_model": ("cnn_jax.models", "create"),
         "list_models": ("cnn_jax.models", "list_models")}


class _TrainPackage(types.ModuleType):
  """The ``cnn_jax.train`` subpackage, callable as :func:`cnn_jax.train`."""

  def __call__(self, config, workdir: str) -> dict:
    """Trains ``config`` (an experiment's ConfigDict, see :func:`load_config`) in
    ``workdir``, resuming from its checkpoints if it has any, then evaluates the test split
    and writes the figures and the report there.

    Returns:
      The run's results: ``"val"`` and ``"test"`` metrics, ``"steps"``, ``"diagnosis"``.
    """
    from cnn_jax.experiment import train
    return train(config, workdir)


class _EvaluatePackage(types.ModuleType):
  """The ``cnn_jax.evaluate`` subpackage, callable as :func:`cnn_jax.evaluate`."""

  def __call__(self, workdir: str, checkpoint: str = "best", split: str = "test") -> dict:
    """Restores ``checkpoint`` ("best", "latest" or a step) of the run in ``workdir``,
    evaluates it on ``split`` ("test", "val" or "train") and writes ``eval/<split>.json``,
    the figures and the report.

    Returns:
      The split's metrics, with ``json_path`` the JSON file written.
    """
    from cnn_jax.evaluate.run import evaluate_run
    return evaluate_run(workdir, checkpoint=checkpoint, split=split)


_CALLABLE_SUBPACKAGES = {"train": _TrainPackage, "evaluate": _EvaluatePackage}


class _Package(types.ModuleType):
  """This package's module: makes ``train`` and ``evaluate`` callable when the import system
  binds them as attributes (that is, whenever the subpackage is first imported)."""

  def __setattr__(self, name: str, value) -> None:
    if name in _CALLABLE_SUBPACKAGES and isinstance(value, types.ModuleType):
      value.__class__ = _CALLABLE_SUBPACKAGES[name]
    super().__setattr__(name, value)


def __getattr__(name: str):
  if name in _CALLABLE_SUBPACKAGES:
    return importlib.import_module(f"{__name__}.{name}")  # binds it through _Package
  if name in _LAZY:
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_config(path: str, overrides: Sequence[str] = ()):
  """The ``get_config()`` of the experiment file at ``path``, with ``overrides`` applied.

  Args:
    path: an experiment file, e.g. ``"experiments/digits_lenet5.py"``.
    overrides: ``"key=value"`` strings as on the command line without ``--config.``,
      e.g. ``["optimizer.learning_rate=3e-3", "train.epochs=20"]``.

  Raises:
    ConfigError: a missing or broken file, or an override of a key that does not exist.
  """
  from cnn_jax import config as config_lib
  config = config_lib.load_config(path)
  config_lib.apply_overrides(config, list(overrides))
  return config


def summary(name: str, input_size: int | None = None, *, channels: int | None = None,
            num_classes: int | None = None, depth: int | None = 2,
            param_groups=None) -> str:
  """The per-layer table, parameter count and forward GFLOPs of model ``name`` as text.

  Args:
    name: a registered model (see :func:`list_models`).
    input_size: image height and width; default the model's native size (e.g. 299 for
      ``xception``), as are ``channels``.
    num_classes: classifier outputs; default the model's.
    depth: module nesting shown in the table (None: all).
    param_groups: ``optimizer.param_groups`` rules (e.g. ``(("head", 1.0), ("*",
      "frozen"))``) whose frozen parameters are counted apart from the trainable ones.

  Raises:
    CnnJaxError: an unknown model, or an input size the model cannot take.
  """
  from cnn_jax.models import create
  from cnn_jax.models.catalog import input_shape
  from cnn_jax.models.summary import format_summary, summarize
  from cnn_jax.train.state import check_input_shape
  model = create(name, **({"num_classes": num_classes} if num_classes else {}))
  shape = input_shape(name, input_size, channels)
  check_input_shape(model, (shape,), name)
  frozen = None
  if param_groups:
    from cnn_jax.transfer.param_groups import frozen_paths
    frozen = lambda params: frozen_paths(params, param_groups, name)  # noqa: E731
  return format_summary(summarize(model, (1,) + shape, frozen=frozen), max_depth=depth)


sys.modules[__name__].__class__ = _Package
