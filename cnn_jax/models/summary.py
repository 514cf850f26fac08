"""Per-layer summary of a model: output shapes, parameters, receptive fields, MACs and FLOPs.

Everything but the FLOPs comes from tracing the inference forward pass (``train=False``)
abstractly, so no memory is spent on weights or activations: each submodule call is
intercepted (``nn.intercept_methods``) to record its output, whose receptive field, jump
and start are then read off the jaxpr (:mod:`cnn_jax.basics.receptive_field`).

Two cost measures are reported per image:

* GMACs: multiply-adds of the convolutions and matrix products, counted from the jaxpr; the
  number papers quote (ResNet-50 at 224x224: 4.1 GMACs, often written "4.1 GFLOPs").
* GFLOPs: XLA's cost analysis of the compiled forward pass, where a multiply-add is two
  FLOPs (plus the elementwise ops: ResNet-50 is about 8.2). Compiling costs a few seconds
  for big models on a CPU; pass ``compute_flops=False`` to skip it.

Example::

  print(format_summary(summarize(create("resnet50"), (1, 224, 224, 3))))
"""

import dataclasses
import math
from typing import Any, Callable, Collection, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from jax.extend import core

from cnn_jax.basics.receptive_field import ReceptiveField, receptive_fields_of_jaxpr
from cnn_jax.models.layers import plain_convolutions


@dataclasses.dataclass(frozen=True)
class LayerRow:
  """One submodule call: its path (``"layer1_0/conv1"``), class, output shape, parameters
  and receptive field.

  ``params`` counts the module's whole subtree; ``output_shape`` and ``receptive_field``
  describe the first array it returns (the field is ``None`` for non-image inputs).
  """
  path: str
  module: str
  output_shape: tuple[int, ...]
  params: int
  receptive_field: Optional[ReceptiveField] = None

  @property
  def depth(self) -> int:
    return self.path.count("/") + 1


@dataclasses.dataclass(frozen=True)
class Summary:
  """What :func:`summarize` measured; ``gmacs`` and ``gflops`` are per image, ``gflops`` is
  ``None`` if not computed."""
  model: str
  input_shape: tuple[int, ...]
  rows: list[LayerRow]
  total_params: int
  other_variables: dict[str, int]  # e.g. {"batch_stats": 53120}
  gflops: Optional[float]
  gmacs: float = 0.0
  frozen_params: int = 0  # of total_params, those frozen (``optimizer.param_groups``)


def _count(tree: Any) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


def _multiply_adds(jaxpr: core.Jaxpr) -> int:
  """Multiply-adds of the convolutions and matrix products in ``jaxpr`` and its callees."""
  total = 0
  for eqn in jaxpr.eqns:
    out_size = math.prod(eqn.outvars[0].aval.shape) if eqn.outvars else 0
    if eqn.primitive.name == "conv_general_dilated":
      kernel = eqn.invars[1].aval.shape  # each output takes kernel taps x input channels
      total += out_size * math.prod(kernel) // kernel[eqn.params["dimension_numbers"].rhs_spec[0]]
    elif eqn.primitive.name == "dot_general":
      (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += out_size * math.prod(lhs[a] for a in lhs_contracting)
    total += sum(_multiply_adds(inner) for inner in core.jaxprs_in_params(eqn.params))
  return total


def summarize(model: nn.Module, input_shape: tuple[int, ...], *, dtype: Any = jnp.float32,
              compute_flops: bool = True,
              frozen: Callable[[Any], Collection[tuple[str, ...]]] | None = None) -> Summary:
  """Summarizes ``model`` on inputs of shape ``input_shape`` (``[B, H, W, C]``).

  Args:
    model: a module following the zoo's convention, ``model(x, train) -> (logits, features)``.
    input_shape: the input batch shape; MACs and FLOPs are divided by ``B``.
    dtype: the input dtype.
    compute_flops: compile the forward pass to count its FLOPs.
    frozen: ``params -> paths of the frozen parameters`` (e.g.
      :func:`cnn_jax.transfer.param_groups.frozen_paths` with a run's rules), to report
      trainable and frozen counts.
  """
  x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  params = variables.get("params", {})

  calls = []  # [path, class name, first output array], in call order

  def record(next_fun, args, kwargs, context):
    if context.method_name != "__call__" or not context.module.path:
      return next_fun(*args, **kwargs)
    call = [context.module.path, type(context.module).__name__, None]
    calls.append(call)
    out = next_fun(*args, **kwargs)
    call[2] = jax.tree.leaves(out)[0]
    return out

  def forward(variables, x):
    return model.apply(variables, x, train=False)

  def recorded_forward(variables, x):
    """The module outputs come back as outputs of the trace, to find them in the jaxpr."""
    with nn.intercept_methods(record):
      forward(variables, x)
    return [call[2] for call in calls]

  with plain_convolutions():  # the layers' own convolutions, whatever their conv_impl
    closed = jax.make_jaxpr(recorded_forward)(variables, x)
  image_axes = (1, 2) if len(input_shape) == 4 else ()
  fields = receptive_fields_of_jaxpr(closed, len(jax.tree.leaves(variables)), image_axes)

  def subtree(path):
    tree = params
    for name in path:
      tree = tree.get(name, {})
    return tree

  rows = [LayerRow("/".join(path), name, tuple(out.shape), _count(subtree(path)), field)
          for (path, name, out), field in zip(calls, fields)]
  gflops = None
  if compute_flops:
    with plain_convolutions():
      cost = jax.jit(forward).lower(variables, x).compile().cost_analysis()
    gflops = cost["flops"] / input_shape[0] / 1e9
  return Summary(
      model=type(model).__name__, input_shape=tuple(input_shape), rows=rows,
      total_params=_count(params),
      other_variables={k: _count(v) for k, v in variables.items() if k != "params"},
      gflops=gflops, gmacs=_multiply_adds(closed.jaxpr) / input_shape[0] / 1e9,
      frozen_params=_frozen_count(params, frozen(params)) if frozen else 0)


def _frozen_count(params, paths: Collection[tuple[str, ...]]) -> int:
  flat = traverse_util.flatten_dict(params)
  return sum(flat[p].size for p in paths)


def _per_axis(values: tuple) -> str:
  """``(h, w)`` values as ``"h"`` when they are equal, else ``"hxw"``; ``None`` as ``-``."""
  text = ["-" if v is None else f"{v:g}" for v in values]
  return text[0] if len(set(text)) == 1 else "x".join(text)


def format_summary(summary: Summary, max_depth: Optional[int] = None) -> str:
  """A plain-text table of ``summary``; ``max_depth`` hides deeper submodules.

  The receptive-field columns are those of :class:`ReceptiveField` (left out for inputs
  that are not images); a ``*`` marks a field larger than the input image.
  """
  rows = [r for r in summary.rows if max_depth is None or r.depth <= max_depth]
  image = summary.input_shape[1:3]
  table = [("module", "type", "output shape", "params", "RF", "jump", "start")]
  any_larger = False
  for r in rows:
    field, cells = r.receptive_field, ("", "", "")
    if field is not None:
      larger = any(size > n for size, n in zip(field.size, image))
      any_larger |= larger
      cells = (_per_axis(field.size) + ("*" if larger else ""), _per_axis(field.jump),
               _per_axis(field.start))
    table.append((r.path, r.module, str(list(r.output_shape)), f"{r.params:,}") + cells)
  widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
  lines = [f"{summary.model} on input {list(summary.input_shape)}"]
  with_fields = any(r.receptive_field is not None for r in rows)
  for i, row in enumerate(table):
    row = row if with_fields else row[:4]
    lines.append("  ".join(cell.ljust(width) if column < 3 else cell.rjust(width)
                           for column, (cell, width) in enumerate(zip(row, widths))))
    if i == 0:
      lines.append("-" * len(lines[-1]))
  if with_fields:
    lines.append("RF: receptive field of the first output element, in input pixels"
                 + (" (* larger than the input)" if any_larger else "") + "; start: its centre")
    lines.append("jump: input pixels between neighbouring outputs (the effective stride), "
                 "'-' once the axis is flattened or pooled away")
  lines.append(f"Parameters: {summary.total_params:,} "
               f"({summary.total_params * 4 / 2**20:.1f} MiB as float32)")
  if summary.frozen_params:
    lines.append(f"Trainable: {summary.total_params - summary.frozen_params:,}, frozen: "
                 f"{summary.frozen_params:,}")
  for collection, count in summary.other_variables.items():
    lines.append(f"Other variables ({collection}): {count:,}")
  if summary.gflops is not None:
    lines.append(f"Forward: {summary.gflops:.4g} GFLOPs per image (2 × multiply-adds, XLA cost "
                 "analysis)")
  lines.append(f"Forward: {summary.gmacs:.4g} GMACs per image (multiply-adds of convolutions "
               "and matrix products, the number papers quote)")
  return "\n".join(lines)
