"""Pretrained weights from Keras and PyTorch files -> ``{"params", "batch_stats"}``.

``load_pretrained(model_name, path)`` picks the reader by extension:

* ``.h5`` (Keras 3 ``.weights.h5``, or Keras 2's legacy ``.h5`` such as the
  ``keras.applications`` downloads): :mod:`cnn_jax.models.convert.keras`, for
  ``vgg16``/``vgg19``, ``keras_resnet50/101/152``, ``keras_inception_v3`` and ``xception``.
* ``.safetensors``, ``.pth``, ``.pt`` (a PyTorch state dict in torchvision naming):
  :mod:`cnn_jax.models.convert.torch`, for every model whose names follow torchvision's
  (AlexNet, VGG, GoogLeNet, Inception v3, the ResNets, the CIFAR ResNets).

Both converters describe a model the same way (:func:`trace`: the abstract variables of
``model.init`` and the order in which modules run) and hand a *plan* -- for every leaf of
the model, the file key that holds it and the :class:`Layout` it is stored in -- to
:func:`assemble`, the one place that checks a file against the model: a missing key, a
wrong shape or a non-float tensor raises :class:`WeightFileError` naming the key and what
was expected; keys left over once every leaf is filled are reported as unexpected. Leaves
the caller skips (``load_pretrained(..., skip=...)``, e.g. the classifier of a model whose
file was saved without it, Keras's ``include_top=False``) are not read and come back as
zeros, for the caller to initialize. Only
tensors are read: nothing is unpickled beyond what ``torch.load(weights_only=True)``
allows.
"""

import os
from typing import Any, Callable, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.errors import CnnJaxError

Path = tuple[str, ...]


class WeightFileError(CnnJaxError):
  """A weight file cannot be read or does not match the model."""


class Layout(NamedTuple):
  """How a file stores a tensor relative to the flax leaf it fills."""
  description: str
  source_shape: Callable[[tuple], tuple]  # flax shape -> shape in the file
  to_flax: Callable[[np.ndarray, tuple], np.ndarray]  # (file array, flax shape) -> flax array


def oihw_to_hwio(kernel: np.ndarray) -> np.ndarray:
  """A PyTorch conv weight ``[out, in, kh, kw]`` as a flax kernel ``[kh, kw, in, out]``."""
  return kernel.transpose(2, 3, 1, 0)


SAME = Layout("as in flax", lambda s: tuple(s), lambda a, s: a)
OIHW = Layout("[out, in, kh, kw]", lambda s: (s[3], s[2], s[0], s[1]),
              lambda a, s: oihw_to_hwio(a))
TRANSPOSED = Layout("[out, in]", lambda s: tuple(s[::-1]), lambda a, s: a.T)


def _keep_all(path: Path) -> bool:
  return False


class Trace(NamedTuple):
  """What the converters need to know about a model, computed without allocating it."""
  shapes: dict  # {"params": ..., "batch_stats": ...} of jax.ShapeDtypeStruct
  modules: list[tuple[Path, str]]  # (path, class name) of modules owning variables, call order
  skip: Callable[[Path], bool] = _keep_all  # (*module path, leaf) -> not read from the file


def trace(model: nn.Module, input_shape: tuple[int, ...],
          skip: Callable[[Path], bool] = _keep_all) -> Trace:
  """Abstract ``model.init`` on ``input_shape`` (``[B, H, W, C]``), recording call order;
  ``skip``: the leaves (``(*module path, leaf)``) the converter leaves out."""
  called: dict[Path, str] = {}

  def record(next_fn, args, kwargs, context):
    if context.method_name == "__call__":
      called.setdefault(tuple(context.module.path), type(context.module).__name__)
    return next_fn(*args, **kwargs)

  with nn.intercept_methods(record):
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(input_shape, jnp.float32))
  shapes = {k: v for k, v in shapes.items() if k in ("params", "batch_stats")}
  modules = [(path, cls) for path, cls in called.items() if module_leaves(shapes, path)]
  return Trace(shapes, modules, skip)


def module_leaves(shapes: Mapping, path: Path) -> list[tuple[str, str, Any]]:
  """``(collection, leaf name, ShapeDtypeStruct)`` of the variables owned by module ``path``."""
  leaves = []
  for collection, tree in shapes.items():
    for name in path:
      tree = tree.get(name, {}) if isinstance(tree, Mapping) else {}
    if isinstance(tree, Mapping):
      leaves += [(collection, k, v) for k, v in tree.items() if not isinstance(v, Mapping)]
  return leaves


class Entry(NamedTuple):
  """Where the flax leaf ``collection/path/leaf`` comes from."""
  key: str
  layout: Layout


def assemble(plan: Mapping[Path, Entry], tensors: Mapping[str, np.ndarray], shapes: Mapping,
             source: str, ignore: Callable[[str], bool] = lambda key: False,
             skip: Callable[[Path], bool] = _keep_all) -> dict:
  """Fills every leaf of ``shapes`` from ``tensors`` following ``plan``; the one checker.

  Args:
    plan: ``(collection, *module path, leaf) -> Entry`` for every leaf of ``shapes``, in the
      order the leaves should be checked (so the first offending key is reported).
    tensors: the file's tensors by key.
    shapes: the abstract variables of the model (``Trace.shapes``).
    source: the file, for messages.
    ignore: keys of the file that carry no weight (PyTorch's ``num_batches_tracked``).
    skip: leaves (``(*module path, leaf)``, no collection) not to read: zeros, whether
      the file has them or not (``Trace.skip``).

  Raises:
    WeightFileError: for the first key that is missing, has the wrong shape or is not a
      float tensor, or (after all leaves are filled) the first unexpected key.
  """
  expected = {tuple(p.key for p in path): leaf
              for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]}
  if set(plan) != set(expected):
    raise AssertionError(f"converter plan does not cover the model: {set(expected) ^ set(plan)}")
  variables: dict = {}
  used = set()
  for path, (key, layout) in plan.items():
    spec = expected[path]
    node = variables
    for name in path[:-1]:
      node = node.setdefault(name, {})
    if skip(path[1:]):
      node[path[-1]] = jnp.zeros(spec.shape, spec.dtype)
      used.add(key)
      continue
    want = layout.source_shape(spec.shape)
    where = f"the model's {'/'.join(path)} {list(spec.shape)}"
    if key not in tensors:
      raise WeightFileError(f"{source}: missing {key!r}; expected a {list(want)} tensor "
                            f"({layout.description}) for {where}.")
    array = np.asarray(tensors[key])
    if array.shape != want:
      raise WeightFileError(f"{source}: {key!r} has shape {list(array.shape)}, expected "
                            f"{list(want)} ({layout.description}) for {where}.")
    if not np.issubdtype(array.dtype, np.floating):
      raise WeightFileError(f"{source}: {key!r} has dtype {array.dtype}, expected floats "
                            f"for {where}.")
    node[path[-1]] = jnp.asarray(layout.to_flax(array, spec.shape), spec.dtype)
    used.add(key)
  unexpected = [k for k in tensors if k not in used and not ignore(k)]
  if unexpected:
    raise WeightFileError(f"{source}: unexpected {unexpected[0]!r} ({len(unexpected)} "
                          f"unexpected keys in all): the model has no tensor there; is the "
                          f"file for another architecture or model options?")
  return variables


KERAS_SUFFIXES = (".h5",)
TORCH_SUFFIXES = (".safetensors", ".pth", ".pt")


def load_pretrained(model_name: str, path: str, skip: Callable[[Path], bool] | None = None,
                    **model_options) -> tuple[nn.Module, dict]:
  """Builds ``model_name`` and loads a Keras or PyTorch weight file into it.

  Args:
    model_name: a registered model (``resnet50``, ``keras_resnet50``, ``vgg16``, ...).
    path: a ``.h5`` / ``.weights.h5`` Keras file, or a ``.safetensors`` / ``.pth`` /
      ``.pt`` PyTorch state dict in torchvision naming.
    skip: ``(*module path, leaf) -> bool``: leaves not to read (zeros in the result), such
      as a classifier the file was saved without.
    **model_options: constructor options, e.g. ``num_classes=10`` for a 10-class head.

  Returns:
    ``(model, variables)``, ready for ``model.apply(variables, x, train=False)``; every
    leaf of ``model.init`` is present with its shape and dtype.

  Raises:
    WeightFileError: for a missing or unreadable file, an unknown extension, or a file
      that does not fit the model (naming the first offending key).
  """
  from cnn_jax.models import create
  from cnn_jax.models.catalog import input_shape

  if path.endswith(KERAS_SUFFIXES):
    from cnn_jax.models.convert import keras as converter
    read = converter.read_weights
  elif path.endswith(TORCH_SUFFIXES):
    from cnn_jax.models.convert import torch as converter
    read = converter.read_state_dict
  else:
    raise WeightFileError(f"Cannot tell the format of {path!r}: use a Keras file "
                          f"({', '.join(KERAS_SUFFIXES)}) or a PyTorch state dict "
                          f"({', '.join(TORCH_SUFFIXES)}).")
  if not os.path.isfile(path):
    raise WeightFileError(f"No weight file at {path!r}.")
  model = create(model_name, **model_options)
  traced = trace(model, (1, *input_shape(model_name)), skip or _keep_all)
  return model, converter.convert(model, read(path), traced, source=path)
