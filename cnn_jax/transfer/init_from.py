"""``model.init_from``: start a fresh run from a weight file or from another run's checkpoint.

Config keys (in the ``model`` section; :data:`INIT_KEYS`, never passed to the model):

* ``init_from``: a Keras ``.h5`` or PyTorch ``.pth``/``.pt``/``.safetensors`` file (read by
  :func:`cnn_jax.models.convert.load_pretrained` into ``model.name`` at its native head, e.g.
  ImageNet's 1,000 classes), or the workdir of a run of the same architecture;
* ``init_checkpoint``: which checkpoint of that run (``"best"``, ``"latest"`` or a step);
* ``init_skip``: parameter groups or path patterns (as in
  :mod:`cnn_jax.transfer.param_groups`, e.g. ``("head",)``) that keep their fresh
  initialization, such as a new classifier of another size; a weight file need not hold
  them (Keras's ``include_top=False`` files, the notes' VGG16);
* ``init_options``: for a weight file, the constructor options it was saved with (default:
  this model's own options), e.g. ``{}`` to read Keras's VGG16 with its 4096-wide classifier
  into a model whose ``dense_units=256`` head is skipped;
* ``init_reverse_channels``: for a weight file whose first convolution reads BGR images
  (Keras's VGG16 and ResNet50, trained on Caffe's preprocessing): reverse the input channels
  of every convolution kernel with three of them (the first one) so that the run feeds RGB.

The training loop calls :func:`initialize` only when the workdir holds no checkpoint: a
resumed run continues from its own checkpoint, never from the init source. Every other
leaf of ``params`` and ``batch_stats`` must be in the source with the model's shape; one
that is not raises an error naming it.
"""

import json
import os
import warnings
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models import create
from cnn_jax.models.catalog import input_shape
from cnn_jax.models.convert import TORCH_SUFFIXES, KERAS_SUFFIXES, load_pretrained, trace
from cnn_jax.train.state import TrainState
from cnn_jax.transfer.param_groups import group_modules, matcher, path_name

INIT_KEYS = ("init_from", "init_skip", "init_checkpoint", "init_options",
             "init_reverse_channels")


def model_options(model: ml_collections.ConfigDict) -> dict:
  """The ``model`` section's constructor options: all keys but ``name`` and :data:`INIT_KEYS`."""
  return {k: v for k, v in model.items() if k != "name" and k not in INIT_KEYS}


def skip_matcher(model_name: str, top_level: list[str],
                 patterns: Sequence[str]) -> Callable[[tuple[str, ...]], bool]:
  """``path -> bool``: whether a parameter path falls under one of ``patterns`` (groups of
  the model, e.g. ``"head"``, or shell patterns over paths); ``top_level``: the model's
  top-level module names."""
  groups = group_modules(model_name, top_level)
  matchers = [matcher(pattern, groups) for pattern in patterns]
  return lambda path: any(matches(path) for matches in matchers)


def weight_file_variables(model_name: str, path: str, options: dict,
                          reverse_channels: bool = False, skip: Sequence[str] = ()) -> dict:
  """``{"params", "batch_stats"}`` of ``create(model_name, **options)`` read from the weight
  file ``path`` by :func:`load_pretrained`; ``reverse_channels``: BGR -> RGB for the kernels
  of the convolutions that read the (3-channel) image; ``skip``: groups or path patterns
  not read (zeros; the file may lack them)."""
  options = dict(options)
  if "dtype" in options:
    options["dtype"] = jnp.dtype(options["dtype"])
  skipped = None
  if skip:
    shapes = trace(create(model_name, **options), (1, *input_shape(model_name))).shapes
    skipped = skip_matcher(model_name, list(shapes["params"]), skip)
  _, variables = load_pretrained(model_name, path, skip=skipped, **options)
  if not reverse_channels:
    return variables

  def reverse(path, leaf):
    image_conv = path[-1].key == "kernel" and leaf.ndim == 4 and leaf.shape[2] == 3
    return leaf[:, :, ::-1, :] if image_conv else leaf

  return {**variables, "params": jax.tree_util.tree_map_with_path(reverse, variables["params"])}


def seen_in_training(source_indices: dict, indices: dict) -> dict[str, int]:
  """How many of this run's ``val`` and ``test`` examples the source run trained on:
  ``{"val": n, "test": n}`` from both runs' split indices (``PreparedData.indices``) into
  the same dataset; a test split taken from the dataset's own test images counts 0."""
  trained = np.asarray(source_indices["train"])
  seen = {"val": int(np.isin(indices["val"], trained).sum()), "test": 0}
  if str(indices["test_from"]) == "train":
    seen["test"] = int(np.isin(indices["test"], trained).sum())
  return seen


def _but_split(dataset: ml_collections.ConfigDict) -> str:
  """The dataset section without ``split_seed``, as JSON (a saved config's tuples are lists)."""
  return json.dumps({k: v for k, v in dataset.to_dict().items() if k != "split_seed"},
                    sort_keys=True, default=str)


def source_variables(config: ml_collections.ConfigDict, load_run: Callable,
                     indices: dict | None = None) -> tuple[dict, str]:
  """``({"params": ..., "batch_stats": ...}, description)`` of ``config.model.init_from``.

  Two warnings for a source run: trained with the same ``seed``, this run would replay its
  batch order, augmentations and dropout masks step for step (both count steps from 0;
  a network that has seen exactly these draws reports an optimistic training loss);
  on the same dataset with another split (``indices``: this run's), some of this run's
  validation or test examples were the source's training examples, and its scores on
  them would be optimistic (``dataset.split_seed`` shares a split between runs)."""
  model = config.model
  path = model.init_from
  if os.path.isdir(path):
    session, state, step, _ = load_run(path, str(model.get("init_checkpoint") or "best"))
    if session.config.get("seed") == config.get("seed"):
      warnings.warn(f"model.init_from: {path} was trained with the same seed "
                    f"({config.get('seed')}), so this run replays its batch order, augmentations "
                    "and dropout masks; give this run another seed.", stacklevel=2)
    if indices is not None and _but_split(session.config.dataset) == _but_split(config.dataset):
      seen = seen_in_training(session.data.indices, indices)
      if any(seen.values()):
        warnings.warn(f"model.init_from: {seen['test']} test and {seen['val']} validation "
                      f"examples of this run were training examples of {path} (another "
                      "split of the same dataset): give both runs the same dataset.split_seed.",
                      stacklevel=2)
    net = state.nets["net"]
    return {"params": net.params, **net.collections}, f"run {path} (step {step})"
  if path.endswith(KERAS_SUFFIXES + TORCH_SUFFIXES):
    options = model.get("init_options")
    options = model_options(model) if options is None else dict(options)
    return weight_file_variables(model.name, path, options,
                                 bool(model.get("init_reverse_channels")),
                                 tuple(model.get("init_skip") or ())), path
  raise ConfigError(f"model.init_from={path!r} is neither a run's workdir nor a weight file "
                    f"({', '.join(KERAS_SUFFIXES + TORCH_SUFFIXES)}); fix the path.")


def initialize(state: TrainState, config: ml_collections.ConfigDict,
               load_run: Callable, indices: dict | None = None) -> TrainState:
  """``state`` with network ``"net"``'s variables taken from ``model.init_from`` (except the
  ``init_skip`` ones) and its optimizer state initialized afresh.

  Raises:
    ConfigError: a leaf the source lacks; ShapeError: a leaf whose shape differs. Both name
      the leaf and suggest ``model.init_skip``.
  """
  source, where = source_variables(config, load_run, indices)
  net = state.nets["net"]
  skipped = skip_matcher(config.model.name, list(net.params),
                         tuple(config.model.get("init_skip") or ()))
  hint = "add it (or its group, e.g. 'head') to model.init_skip to keep its fresh initialization"
  variables = {}
  for collection, tree in {"params": net.params, **net.collections}.items():
    given = traverse_util.flatten_dict(source.get(collection, {}))
    leaves = {}
    for path, leaf in traverse_util.flatten_dict(tree).items():
      name = f"{collection}/{path_name(path)}"
      if skipped(path):
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
