"""``model.init_from``: start a fresh run from a weight file or from another run's checkpoint.

Config keys (in the ``model`` section; :data:`INIT_KEYS`, never passed to the model):

* ``init_from``: a Keras ``.h5`` or PyTorch ``.pth``/``.pt``/``.safetensors`` file (read by
  :func:`cnn_jax.models.convert.load_pretrained` into ``model.name`` at its native head, e.g.
  ImageNet's 1,000 classes), or the workdir of a run of the same architecture;
* ``init_checkpoint``: which checkpoint of that run (``"best"``, ``"latest"`` or a step);
* ``init_skip``: parameter groups or path patterns (as in
  :mod:`cnn_jax.transfer.param_groups`, e.g. ``("head",)``) that keep their fresh
  initialization, such as a new classifier of another size.

The training loop calls :func:`initialize` only when the workdir holds no checkpoint: a
resumed run continues from its own checkpoint, never from the init source. Every other
leaf of ``params`` and ``batch_stats`` must be in the source with the model's shape; one
that is not raises an error naming it.
"""

import os
from typing import Callable

import jax.numpy as jnp
import ml_collections
from flax import traverse_util

from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models.convert import TORCH_SUFFIXES, KERAS_SUFFIXES, load_pretrained
from cnn_jax.train.state import TrainState
from cnn_jax.transfer.param_groups import group_modules, matcher, path_name

INIT_KEYS = ("init_from", "init_skip", "init_checkpoint")


def model_options(model: ml_collections.ConfigDict) -> dict:
  """The ``model`` section's constructor options: all keys but ``name`` and :data:`INIT_KEYS`."""
  return {k: v for k, v in model.items() if k != "name" and k not in INIT_KEYS}


def source_variables(config: ml_collections.ConfigDict, load_run: Callable) -> tuple[dict, str]:
  """``({"params": ..., "batch_stats": ...}, description)`` of ``model.init_from``."""
  path = config.model.init_from
  if os.path.isdir(path):
    _, state, step, _ = load_run(path, str(config.model.get("init_checkpoint") or "best"))
    net = state.nets["net"]
    return {"params": net.params, **net.collections}, f"run {path} (step {step})"
  if path.endswith(KERAS_SUFFIXES + TORCH_SUFFIXES):
    options = model_options(config.model)
    if "dtype" in options:
      options["dtype"] = jnp.dtype(options["dtype"])
    _, variables = load_pretrained(config.model.name, path, **options)
    return variables, path
  raise ConfigError(f"model.init_from={path!r} is neither a run's workdir nor a weight file "
                    f"({', '.join(KERAS_SUFFIXES + TORCH_SUFFIXES)}); fix the path.")


def initialize(state: TrainState, config: ml_collections.ConfigDict,
               load_run: Callable) -> TrainState:
  """``state`` with network ``"net"``'s variables taken from ``model.init_from`` (except the
  ``init_skip`` ones) and its optimizer state initialized afresh.

  Raises:
    ConfigError: a leaf the source lacks; ShapeError: a leaf whose shape differs. Both name
      the leaf and suggest ``model.init_skip``.
  """
  source, where = source_variables(config, load_run)
  net = state.nets["net"]
  groups = group_modules(config.model.name, list(net.params))
  skip = [matcher(pattern, groups) for pattern in config.model.get("init_skip") or ()]
  hint = "add it (or its group, e.g. 'head') to model.init_skip to keep its fresh initialization"
  variables = {}
  for collection, tree in {"params": net.params, **net.collections}.items():
    given = traverse_util.flatten_dict(source.get(collection, {}))
    leaves = {}
    for path, leaf in traverse_util.flatten_dict(tree).items():
      name = f"{collection}/{path_name(path)}"
      if any(skipped(path) for skipped in skip):
        leaves[path] = leaf
      elif path not in given:
        raise ConfigError(f"model.init_from: {where} has no {name}; {hint}.")
      elif tuple(given[path].shape) != tuple(leaf.shape):
        raise ShapeError(f"model.init_from: {name} is {list(given[path].shape)} in {where} but "
                         f"{list(leaf.shape)} in this model; {hint}.")
      else:
        leaves[path] = jnp.asarray(given[path], leaf.dtype)
    variables[collection] = traverse_util.unflatten_dict(leaves)
  params = variables.pop("params")
  net = net.replace(params=params, collections=variables, opt_state=net.tx.init(params))
  return state.replace(nets={**state.nets, "net": net})
