"""PyTorch state dicts in torchvision naming -> flax variables.

A flax module path names the state-dict prefix: its names joined with ``"."`` and, for
every family except Inception v3, every ``"_"`` turned into ``"."`` (``layer1_0/
downsample_0`` is ``layer1.0.downsample.0``, ``inception3a/branch2_1/conv`` is
``inception3a.branch2.1.conv``; Inception v3's ``Mixed_5b/branch5x5_1/conv`` is kept as
``Mixed_5b.branch5x5_1.conv``, torchvision's attribute names). The models' docstrings
state these rules. Leaves:

* conv ``kernel`` [kh, kw, in, out] is ``weight`` [out, in, kh, kw];
* dense ``kernel`` [in, out] is ``weight`` [out, in];
* batch-norm ``scale`` is ``weight``; ``bias`` is ``bias``;
* ``batch_stats`` ``mean``/``var`` are ``running_mean``/``running_var``.

``num_batches_tracked`` is ignored. Files: ``.safetensors`` (read with ``safetensors.numpy``,
no PyTorch needed) or ``.pth``/``.pt`` (``torch.load(weights_only=True)``: tensors only).
"""

import pickle
import re

import flax.linen as nn
import numpy as np

from cnn_jax.models.convert import (OIHW, SAME, TRANSPOSED, Entry, Trace, WeightFileError,
                                    assemble, module_leaves)
from cnn_jax.models.inception_v3 import InceptionV3

LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
              "var": "running_var"}


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of a ``.safetensors`` file or a ``torch.save``-d state dict, as numpy.

  Raises:
    WeightFileError: if the file holds anything but a flat ``{name: tensor}`` mapping.
  """
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file
    return load_file(path)
  import torch
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    # torch's message advises weights_only=False (unsafe: it runs the file's code); keep
    # only what it found, e.g. "Unsupported global: GLOBAL argparse.Namespace".
    found = re.search(r"WeightsUnpickler error: ([^\n]+)", str(e))
    detail = found.group(1) if found else str(e).splitlines()[0][:200]
    raise WeightFileError(f"{path}: not a plain state dict of tensors (only tensors are "
                          f"loaded, nothing else is unpickled): {detail}. Save "
                          "model.state_dict() alone, or convert it to .safetensors.") from None
  except RuntimeError as e:  # not a torch.save zip archive (damaged, or another format)
    raise WeightFileError(f"{path} is not a file written by torch.save, or it is damaged "
                          f"({str(e).splitlines()[0][:200]}).") from None
  if not isinstance(state, dict):
    raise WeightFileError(f"{path}: holds a {type(state).__name__}, expected a state dict "
                          f"(torch.save(model.state_dict(), path)).")
  arrays = {}
  for key, value in state.items():
    if not isinstance(value, torch.Tensor):
      raise WeightFileError(f"{path}: entry {key!r} ({type(value).__name__}) is not a tensor; "
                            f"save the model's state_dict() alone.")
    value = value.detach()
    arrays[key] = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
  return arrays


def module_prefix(model: nn.Module, path: tuple[str, ...]) -> str:
  """The state-dict prefix of the flax module at ``path`` (see the module docstring)."""
  joined = ".".join(path)
  return joined if isinstance(model, InceptionV3) else joined.replace("_", ".")


def convert(model: nn.Module, state_dict: dict[str, np.ndarray], traced: Trace,
            source: str) -> dict:
  """``{"params", "batch_stats"}`` for ``model`` from a torchvision-named state dict.

  Raises:
    WeightFileError: naming the first missing, misshapen or unexpected key.
  """
  plan = {}
  for path, _ in traced.modules:
    prefix = module_prefix(model, path)
    for collection, leaf, spec in module_leaves(traced.shapes, path):
      layout = SAME
      if leaf == "kernel":
        layout = OIHW if len(spec.shape) == 4 else TRANSPOSED
      plan[(collection, *path, leaf)] = Entry(f"{prefix}.{LEAF_NAMES[leaf]}", layout)
  return assemble(plan, state_dict, traced.shapes, source,
                  ignore=lambda key: key.endswith(".num_batches_tracked"), skip=traced.skip)
