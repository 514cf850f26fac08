"""Per-layer summary of a model: output shapes, parameter counts and forward FLOPs.

Shapes and parameter counts come from abstract evaluation (``jax.eval_shape``), so no
memory is spent on weights or activations. FLOPs come from XLA's cost analysis of the
compiled inference forward pass (``train=False``); a multiply-add counts as two FLOPs, so
ResNet-50 at 224x224 is about 8 GFLOPs (the "4.1 GFLOPs" often quoted are multiply-adds).
Compiling costs a few seconds for big models on a CPU; pass ``compute_flops=False`` to skip.

Example::

  print(format_summary(summarize(create("resnet50"), (1, 224, 224, 3))))
"""

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LayerRow:
  """One submodule call: its path (``"layer1_0/conv1"``), class, output shape, parameters.

  ``params`` counts the module's whole subtree; ``output_shape`` is the shape of the
  first array it returns.
  """
  path: str
  module: str
  output_shape: tuple[int, ...]
  params: int

  @property
  def depth(self) -> int:
    return self.path.count("/") + 1


@dataclasses.dataclass(frozen=True)
class Summary:
  """What :func:`summarize` measured; ``gflops`` is per image, ``None`` if not computed."""
  model: str
  input_shape: tuple[int, ...]
  rows: list[LayerRow]
  total_params: int
  other_variables: dict[str, int]  # e.g. {"batch_stats": 53120}
  gflops: Optional[float]


def _count(tree: Any) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


def summarize(model: nn.Module, input_shape: tuple[int, ...], *, dtype: Any = jnp.float32,
              compute_flops: bool = True) -> Summary:
  """Summarizes ``model`` on inputs of shape ``input_shape`` (``[B, H, W, C]``).

  Args:
    model: a module following the zoo's convention, ``model(x, train) -> (logits, features)``.
    input_shape: the input batch shape; FLOPs are divided by ``B``.
    dtype: the input dtype.
    compute_flops: compile the forward pass to count its FLOPs.
  """
  x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  params = variables.get("params", {})

  calls = []  # [path, class name, output shape], in call order

  def record(next_fun, args, kwargs, context):
    if context.method_name != "__call__" or not context.module.path:
      return next_fun(*args, **kwargs)
    call = [context.module.path, type(context.module).__name__, None]
    calls.append(call)
    out = next_fun(*args, **kwargs)
    call[2] = tuple(jax.tree.leaves(out)[0].shape)
    return out

  def forward(variables, x):
    return model.apply(variables, x, train=False)

  def recorded_forward(variables, x):
    with nn.intercept_methods(record):
      return forward(variables, x)

  jax.eval_shape(recorded_forward, variables, x)

  def subtree(path):
    tree = params
    for name in path:
      tree = tree.get(name, {})
    return tree

  rows = [LayerRow("/".join(path), name, shape, _count(subtree(path)))
          for path, name, shape in calls]
  gflops = None
  if compute_flops:
    cost = jax.jit(forward).lower(variables, x).compile().cost_analysis()
    gflops = cost["flops"] / input_shape[0] / 1e9
  return Summary(
      model=type(model).__name__, input_shape=tuple(input_shape), rows=rows,
      total_params=_count(params),
      other_variables={k: _count(v) for k, v in variables.items() if k != "params"},
      gflops=gflops)


def format_summary(summary: Summary, max_depth: Optional[int] = None) -> str:
  """A plain-text table of ``summary``; ``max_depth`` hides deeper submodules."""
  rows = [r for r in summary.rows if max_depth is None or r.depth <= max_depth]
  table = [("module", "type", "output shape", "params")]
  table += [(r.path, r.module, str(list(r.output_shape)), f"{r.params:,}") for r in rows]
  widths = [max(len(row[i]) for row in table) for i in range(4)]
  lines = [f"{summary.model} on input {list(summary.input_shape)}"]
  for i, row in enumerate(table):
    lines.append("  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                            row[2].ljust(widths[2]), row[3].rjust(widths[3])]))
    if i == 0:
      lines.append("-" * len(lines[-1]))
  lines.append(f"Parameters: {summary.total_params:,} "
               f"({summary.total_params * 4 / 2**20:.1f} MiB as float32)")
  for collection, count in summary.other_variables.items():
    lines.append(f"Other variables ({collection}): {count:,}")
  if summary.gflops is not None:
    lines.append(f"Forward: {summary.gflops:.4g} GFLOPs per image (XLA cost analysis)")
  return "\n".join(lines)
