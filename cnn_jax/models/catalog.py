"""The ``models`` command: every registered model with its parameter count."""

import functools
import math

import jax
import jax.numpy as jnp

from cnn_jax.models import MODELS, create

# Tried in order for models registered without an ``input_shape``.
_FALLBACK_SHAPES = ((224, 224, 3), (299, 299, 3), (32, 32, 3))


@functools.lru_cache(maxsize=None)  # the fallback probes trace the model: do it once per name
def input_shape(name: str) -> tuple[int, int, int]:
  """A typical input ``(H, W, C)`` for model ``name``: its registered one, else the first
  of 224x224, 299x299, 32x32 RGB that the model accepts."""
  registered = MODELS.info(name).get("input_shape")
  if registered:
    return tuple(registered)
  model = create(name)
  for shape in _FALLBACK_SHAPES:
    try:
      jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), jnp.zeros((1,) + shape))
      return shape
    except Exception:  # too small or too large for this architecture; try the next size
      continue
  raise ValueError(f"no standard input shape fits model {name!r}")


def count_params(name: str, **options) -> int:
  """Number of trainable parameters of ``create(name, **options)`` (computed abstractly)."""
  model = create(name, **options)
  shape = input_shape(name)
  variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x),
                             jnp.zeros((1,) + shape))
  return sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"]))


def format_catalog(pattern: str = "*") -> str:
  """A table of model names, default input shapes and parameter counts."""
  rows = [(name, "x".join(map(str, input_shape(name))), f"{count_params(name):,}")
          for name in MODELS.names(pattern)]
  if not rows:
    return f"no model matches {pattern!r}; known: {', '.join(MODELS.names())}"
  widths = [max(len(r[i]) for r in rows + [("model", "input", "params")]) for i in range(3)]
  lines = [f"{'model':<{widths[0]}}  {'input':<{widths[1]}}  {'params':>{widths[2]}}"]
  lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
  return "\n".join(lines)
