"""The ``models`` command and each model's native input: every registered model with its
input shape (``(H, W, C)`` for images, kept with its registration) and its parameter count;
and the named parameter groups of each family (``stem``, ``stage1`` .. ``stageN``, ``head``),
like timm's group matchers, for freezing and learning-rate rules
(:mod:`cnn_jax.transfer.param_groups`)."""

import fnmatch
import functools
import math
import re
from typing import Callable

import jax
import jax.numpy as jnp

from cnn_jax.errors import CnnJaxError
from cnn_jax.models import MODELS, create


def input_shape(name: str, image_size: int | None = None,
                channels: int | None = None) -> tuple[int, ...]:
  """The input shape of model ``name`` without the batch axis: its registered native one,
  ``(H, W, C)`` for images (height and width replaced by ``image_size`` and channels by
  ``channels`` where given), or e.g. ``(100,)`` for a generator's latent vector.

  Raises:
    CnnJaxError: an unknown model, one registered without ``input_shape``, or an image
      size for a model that does not take images.
  """
  native = tuple(MODELS.info(name).get("input_shape") or ())
  if not native:
    raise CnnJaxError(f"Model {name!r} has no native input size: register it with "
                      f"@MODELS.register({name!r}, input_shape=(H, W, C)).")
  if len(native) != 3:
    if image_size or channels:
      raise CnnJaxError(f"Model {name!r} takes inputs of shape {list(native)}, not images: "
                        "leave out the image size and channels.")
    return native
  height, width, native_channels = native
  return (image_size or height, image_size or width, channels or native_channels)


@functools.lru_cache(maxsize=None)
def _vgg_stages(name: str) -> dict[str, int]:
  """``{"features_<i>": stage}`` for VGG ``name``: torchvision's ``features`` indices, where
  a convolution (and its batch norm) takes one index each and a ReLU one, and a max pool
  closes every stage."""
  model = create(name)
  per_conv = 3 if model.use_batch_norm else 2  # conv, (batch norm,) ReLU
  stages, index = {}, 0
  for stage, convs in enumerate(model.convs_per_stage, start=1):
    for _ in range(convs):
      stages.update({f"features_{index + k}": stage for k in range(per_conv - 1)})
      index += per_conv
    index += 1  # the max pool
  return stages


def _numbered(regex: str) -> Callable[[str, str], int | None]:
  """``(model name, module) -> stage`` for modules whose name holds it (``regex`` group 1)."""
  return lambda name, module: int(m.group(1)) if (m := re.match(regex, module)) else None


# Family (shell pattern over model names) -> ((model name, top-level module) -> its stage
# number or None, shell patterns of the head's top-level modules). A top-level module in
# neither is part of the stem.
_GROUP_MATCHERS = (
    ("simple_cnn", _numbered(r"block(\d+)_"), ("dense*", "output")),
    ("resnet*", _numbered(r"layer(\d+)_"), ("fc",)),
    ("cifar_resnet*", _numbered(r"layer(\d+)_"), ("fc",)),
    ("vgg*", lambda name, module: _vgg_stages(name).get(module), ("classifier*",)),
)


def layer_groups(name: str, top_level: list[str]) -> dict[str, list[str]]:
  """The named groups of model ``name`` over its top-level modules ``top_level`` (the keys of
  its ``params``), input to output: ``{"stem": [...], "stage1": [...], ..., "head": [...]}``
  (empty groups left out: VGG, whose convolutions all belong to its five stages, has no
  stem); an unknown family has no groups."""
  matcher = next((m for m in _GROUP_MATCHERS if fnmatch.fnmatch(name, m[0])), None)
  if matcher is None:
    return {}
  _, stage_of, head = matcher
  groups: dict[str, list[str]] = {"stem": []}
  stages: dict[int, list[str]] = {}
  for module in top_level:
    stage = stage_of(name, module)
    if any(fnmatch.fnmatch(module, h) for h in head):
      groups.setdefault("head", []).append(module)
    elif stage is not None:
      stages.setdefault(stage, []).append(module)
    else:
      groups["stem"].append(module)
  head_modules = groups.pop("head", [])
  groups.update({f"stage{k}": stages[k] for k in sorted(stages)})
  groups["head"] = head_modules
  return {k: v for k, v in groups.items() if v}


def count_params(name: str, **options) -> int:
  """Number of trainable parameters of ``create(name, **options)`` on its native input
  (one abstract ``init``: no memory is spent on the weights)."""
  model = create(name, **options)
  x = jax.ShapeDtypeStruct((1,) + input_shape(name), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  return sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"]))


def format_catalog(pattern: str = "*") -> str:
  """A table of model names (natural order), native input shapes and parameter counts."""
  rows = [(name, "x".join(map(str, input_shape(name))), f"{count_params(name):,}")
          for name in MODELS.names(pattern)]
  if not rows:
    return f"no model matches {pattern!r}; known: {', '.join(MODELS.names())}"
  widths = [max(len(r[i]) for r in rows + [("model", "input", "params")]) for i in range(3)]
  lines = [f"{'model':<{widths[0]}}  {'input':<{widths[1]}}  {'params':>{widths[2]}}"]
  lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
  return "\n".join(lines)
