"""Keras weight files -> flax variables, for the models ``keras.applications`` has.

* ``vgg16``, ``vgg19``: ``VGG16``, ``VGG19`` with ``include_top=True`` at 224x224;
* ``keras_resnet50``, ``keras_resnet101``, ``keras_resnet152``: ``ResNet50/101/152``;
* ``keras_inception_v3``: ``InceptionV3``;
* ``xception``: ``Xception``.

Pass ``num_classes`` when the file's head has other than 1000 classes; a file saved with
``include_top=False`` loads with ``load_pretrained(..., skip=...)`` naming the head.

Files: Keras 3's ``.weights.h5`` (``model.save_weights``) and Keras 2's legacy ``.h5``
(``save_weights``, ``model.save``, and the ``keras.applications`` downloads), read with
``h5py``. Either way a layer's weights are a list in the layer's own order (conv:
kernel, bias; batch norm: gamma, beta, moving mean, moving variance, without gamma when
``scale=False``; separable conv: depthwise, pointwise kernel; dense: kernel, bias); this
module names them ``"<layer name>/<index>"``.

A Keras layer is one flax module -- or, for a separable conv, the ``depthwise`` and
``pointwise`` modules under one name -- and its weights are that module's leaves in the
order kernel, scale, bias, mean, var. Layer names come from each model's docstring;
layers that Keras leaves unnamed (all of Inception v3's ``conv2d_N`` and
``batch_normalization_N``, Xception's four shortcut convs) are matched in creation order,
which is the order the flax modules run, counting from the file's lowest number.

Layouts are the same (HWIO kernels, ``[in, out]`` dense kernels) except two:
a depthwise kernel is ``[kh, kw, C, 1]`` in Keras and ``[kh, kw, 1, C]`` in flax, and
VGG's first dense layer reads a flatten in Keras's ``(H, W, C)`` order where
:mod:`cnn_jax.models.vgg` flattens ``(C, H, W)`` like torchvision, so its rows are permuted.
"""

import re
from typing import Iterator

import flax.linen as nn
import numpy as np

from cnn_jax.models.convert import (SAME, Entry, Layout, Trace, WeightFileError, assemble,
                                    module_leaves)
from cnn_jax.models.inception_v3 import InceptionV3
from cnn_jax.models.resnet import ResNet
from cnn_jax.models.vgg import VGG
from cnn_jax.models.xception import Xception

# Weights of one Keras layer, in Keras's order (flax leaf name -> rank).
LEAF_ORDER = {"kernel": 0, "scale": 1, "bias": 2, "mean": 3, "var": 4}
# Prefixes of the names Keras gives to unnamed layers, by flax module class.
AUTO_NAMES = {"Conv": "conv2d", "BatchNorm": "batch_normalization"}
VGG_POOLED = 7  # VGG flattens a 7x7 map (its adaptive pool's size; Keras: 224 / 32)

DEPTHWISE = Layout("[kh, kw, C, 1]", lambda s: (s[0], s[1], s[3], s[2]),
                   lambda a, s: a.reshape(s))


def _hwc_rows_to_chw(kernel: np.ndarray, shape: tuple) -> np.ndarray:
  """Dense kernel rows from a ``(H, W, C)`` flatten to a ``(C, H, W)`` one."""
  channels = shape[0] // VGG_POOLED**2
  kernel = kernel.reshape(VGG_POOLED, VGG_POOLED, channels, shape[1])
  return kernel.transpose(2, 0, 1, 3).reshape(shape)


HWC_FLATTEN = Layout("rows in (H, W, C) order", lambda s: tuple(s), _hwc_rows_to_chw)


def read_weights(path: str) -> dict[str, np.ndarray]:
  """``{"<layer>/<index>": array}`` from a Keras 3 ``.weights.h5`` or a Keras 2 ``.h5``.

  Raises:
    WeightFileError: if the file is not a Keras weight file, or a Keras 3 file does not
      record its layer names (older Keras 3 versions wrote none).
  """
  import h5py
  text = lambda s: s.decode() if isinstance(s, bytes) else str(s)
  weights = {}
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise WeightFileError(f"{path}: not an HDF5 file ({e}).") from None
  with f:
    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" in root.attrs:  # Keras 2 layout: <layer>/<weight name>
      for layer in map(text, root.attrs["layer_names"]):
        for i, weight in enumerate(map(text, root[layer].attrs["weight_names"])):
          weights[f"{layer}/{i}"] = root[layer][weight][()]
    elif "layers" in f:  # Keras 3 layout: layers/<class>_<n>/vars/<index>, name in attrs
      for group in f["layers"].values():
        variables = group.get("vars")
        if variables is None or not len(variables):
          continue
        if "name" not in variables.attrs:
          raise WeightFileError(f"{path}: the file does not record layer names; save it with "
                                f"a newer Keras 3 or as a legacy .h5 (model.save('x.h5')).")
        for i in range(len(variables)):
          weights[f"{text(variables.attrs['name'])}/{i}"] = variables[str(i)][()]
    else:
      raise WeightFileError(f"{path}: not a Keras weight file (no layer_names, no layers/).")
  return weights


def _resnet(model: ResNet, modules) -> Iterator[tuple]:
  """``conv{S+1}_block{B+1}_{K}_conv``/``_bn``; the shortcut is ``K = 0``."""
  if model.variant != "keras":
    raise WeightFileError("Keras weights fit the keras_resnet* models (bias in every conv, "
                          "stride in the 1x1); use keras_resnet50/101/152.")
  top = {"conv1": "conv1_conv", "bn1": "conv1_bn", "fc": "predictions"}
  for path, cls in modules:
    if len(path) == 1:
      name = top[path[0]]
    else:
      stage, block = re.fullmatch(r"layer(\d+)_(\d+)", path[0]).groups()
      kind, k = re.fullmatch(r"(conv|bn|downsample_)(\d)", path[1]).groups()
      if kind == "downsample_":  # downsample_0 is the shortcut's conv, downsample_1 its bn
        kind, k = ("conv", "bn")[int(k)], "0"
      name = f"conv{int(stage) + 1}_block{int(block) + 1}_{k}_{kind}"
    yield path, cls, name, SAME


def _vgg(model: VGG, modules) -> Iterator[tuple]:
  """``block{S}_conv{I}`` in call order, then ``fc1``, ``fc2``, ``predictions``."""
  if model.use_batch_norm:
    raise WeightFileError("Keras has no VGG with batch norm; use vgg16 or vgg19.")
  stages = [(s, i) for s, n in enumerate(model.convs_per_stage, 1) for i in range(1, n + 1)]
  convs = iter(stages)
  dense = iter([("fc1", HWC_FLATTEN), ("fc2", SAME), ("predictions", SAME)])
  for path, cls in modules:
    if cls == "Conv":
      yield path, cls, "block{}_conv{}".format(*next(convs)), SAME
    else:
      yield path, cls, *next(dense)


def _inception_v3(model: InceptionV3, modules) -> Iterator[tuple]:
  """Every conv and batch norm unnamed (creation order); the classifier ``predictions``."""
  if model.bn_scale or model.aux_logits:
    raise WeightFileError("Keras's InceptionV3 has no batch-norm scale and no auxiliary "
                          "classifier; use keras_inception_v3.")
  for path, cls in modules:
    yield path, cls, "predictions" if path == ("fc",) else None, SAME


def _xception(model: Xception, modules) -> Iterator[tuple]:
  """Flax names are Keras's, but the four shortcut convs and their batch norms are unnamed."""
  for path, cls in modules:
    name = None if path[0].endswith(("_residual", "_residual_bn")) else path[0]
    yield path, cls, name, DEPTHWISE if path[-1] == "depthwise" else SAME


FAMILIES = {ResNet: _resnet, VGG: _vgg, InceptionV3: _inception_v3, Xception: _xception}


def _auto_names(weights: dict[str, np.ndarray], prefix: str) -> list[str]:
  """The file's layers named ``prefix``, ``prefix_1``, ... sorted by number."""
  numbers = {}
  for key in weights:
    match = re.fullmatch(rf"({prefix}(?:_(\d+))?)/\d+", key)
    if match:
      numbers[match.group(1)] = int(match.group(2) or 0)
  return sorted(numbers, key=numbers.get)


def convert(model: nn.Module, weights: dict[str, np.ndarray], traced: Trace,
            source: str) -> dict:
  """``{"params", "batch_stats"}`` for ``model`` from :func:`read_weights`' output.

  Raises:
    WeightFileError: if Keras has no such model, or naming the first missing, misshapen or
      unexpected weight.
  """
  family = FAMILIES.get(type(model))
  if family is None:
    raise WeightFileError(f"No Keras layout for {type(model).__name__}; Keras weights fit "
                          f"vgg16/19, keras_resnet50/101/152, keras_inception_v3, xception.")
  auto = {cls: iter(_auto_names(weights, prefix)) for cls, prefix in AUTO_NAMES.items()}
  counts = dict.fromkeys(AUTO_NAMES, 0)
  positions: dict[str, int] = {}  # next weight index of each Keras layer
  plan = {}
  for path, cls, name, kernel_layout in family(model, traced.modules):
    if name is None:
      counts[cls] += 1
      name = next(auto[cls], None) or f"{AUTO_NAMES[cls]} number {counts[cls]}"
    leaves = sorted(module_leaves(traced.shapes, path), key=lambda leaf: LEAF_ORDER[leaf[1]])
    for collection, leaf, _ in leaves:
      index = positions.get(name, 0)
      positions[name] = index + 1
      layout = kernel_layout if leaf == "kernel" else SAME
      plan[(collection, *path, leaf)] = Entry(f"{name}/{index}", layout)
  return assemble(plan, weights, traced.shapes, source, skip=traced.skip)
