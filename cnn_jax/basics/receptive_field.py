"""Receptive fields of the arrays a traced function computes, read off its jaxpr.

Along each spatial axis of the input, an output's receptive field is described by three
numbers (Araujo et al. 2019, "Computing receptive fields of convolutional neural networks",
Distill):

* ``size``: how many input pixels the first output element depends on;
* ``jump``: the distance in input pixels between neighbouring output elements (the product
  of the strides so far, the effective stride);
* ``start``: the input coordinate of the centre of the first element's field (pixel centres
  are ``0 .. N - 1``; a negative start or ``start - (size - 1) / 2 < 0`` means the field
  reaches into the padding).

A window op (convolution, pooling) with kernel ``k``, dilation ``d``, stride ``s`` and
``p`` pixels of padding before maps ``(size, jump, start)`` to::

  size + (d (k - 1)) jump,   jump s,   start + (d (k - 1) / 2 - p) jump

The function is traced once with ``jax.make_jaxpr`` and its equations are walked, so
whatever the model does is followed: convolutions (strided, dilated, transposed),
max/average pooling, padding and slicing, residual sums and concatenations (the union of
the fields), reshapes and transposes (the spatial axis is tracked). Where a spatial axis is
merged away (flatten, global pooling, a dense layer or a matrix product over it) the field
becomes the union over all positions and the jump is ``None``. Primitives it does not know
are treated conservatively: every output sees everything every input saw.

Example::

  fields = receptive_fields(lambda x: model.apply(variables, x), images)
"""

import dataclasses
import itertools
import math
import operator
from fractions import Fraction
from typing import Any, Callable, Optional, Sequence

import jax
from jax.extend import core

# Primitives whose output has the input's shape but mixes elements along an axis.
_MIXING_PRIMITIVES = {"cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp", "sort",
                      "argsort", "fft"}
_WINDOW_REDUCTIONS = {"reduce_window_sum", "reduce_window_max", "reduce_window_min",
                      "reduce_window"}
_REDUCTIONS = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and",
               "reduce_or", "reduce_xor", "argmax", "argmin"}


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
  """The receptive field of an array, one entry per spatial input axis (``(H, W)``).

  ``jump`` is ``None`` along an input axis that the array no longer has (it was flattened
  or pooled away); then ``size`` is the union over all positions.
  """
  size: tuple[float, ...]
  jump: tuple[Optional[float], ...]
  start: tuple[float, ...]

  def covers(self, input_size: Sequence[int]) -> bool:
    """Whether the first element's field contains every pixel of an input of this size."""
    return all(start - (size - 1) / 2 <= 0 and start + (size - 1) / 2 >= n - 1
               for size, start, n in zip(self.size, self.start, input_size))


@dataclasses.dataclass(frozen=True)
class _Field:
  """Where the elements along one array axis look along one input axis.

  Element ``m`` of array axis ``axis`` belongs to group ``g = floor(m / repeat)`` and sees
  input pixels ``lo + g jump .. hi + g jump`` (``repeat > 1`` after nearest upsampling or
  flattening, where neighbours share a field). ``axis`` is ``None`` once the axis is merged
  away; then ``lo .. hi`` is what every element sees.
  """
  axis: Optional[int]
  lo: Fraction
  hi: Fraction
  jump: Fraction
  repeat: int = 1

  def moved(self, axis: Optional[int]) -> "_Field":
    return dataclasses.replace(self, axis=axis)

  def covering(self, first: int, last: int) -> tuple[Fraction, Fraction]:
    """The pixels that elements ``first .. last`` see together."""
    ends = ((first // self.repeat) * self.jump, (last // self.repeat) * self.jump)
    return self.lo + min(ends), self.hi + max(ends)

  def merged(self, length: int) -> "_Field":
    """The union over all ``length`` positions along its axis."""
    return _Field(None, *self.covering(0, length - 1), self.jump)

  def windowed(self, kernel: int, stride: int, pad_before: int, input_dilation: int = 1,
               kernel_dilation: int = 1) -> "_Field":
    """Through a window op; ``input_dilation > 1`` is a transposed convolution's spacing
    (the window then touches the elements at multiples of it)."""
    first = -(pad_before // input_dilation)  # ceil(-pad_before / input_dilation)
    last = (kernel_dilation * (kernel - 1) - pad_before) // input_dilation
    jump = self.jump * Fraction(stride, self.repeat * input_dilation)
    return _Field(self.axis, *self.covering(first, last), jump)

  def shifted(self, offset: int, step: int = 1) -> "_Field":
    """Element ``offset + m step`` of the old axis becomes element ``m`` (a slice;
    ``step = -1`` reverses the axis)."""
    lo, hi = self.covering(offset, offset)
    if offset % self.repeat == 0 and step > 0 and self.repeat % step == 0:
      return _Field(self.axis, lo, hi, self.jump, self.repeat // step)
    return _Field(self.axis, lo, hi, self.jump * Fraction(step, self.repeat))

  @property
  def effective_jump(self) -> Fraction:
    """The mean distance in input pixels between neighbouring elements."""
    return self.jump / self.repeat


# A variable's fields: input axis index -> _Field; empty when it does not depend on the input.
_Fields = dict[int, _Field]


def _union(fields: Sequence[_Fields]) -> _Fields:
  out: _Fields = {}
  for f in fields:
    for dim, field in f.items():
      if dim not in out:
        out[dim] = field
      else:
        kept = out[dim] if out[dim].axis is not None else field
        out[dim] = dataclasses.replace(kept, lo=min(out[dim].lo, field.lo),
                                       hi=max(out[dim].hi, field.hi))
  return out


def _remap(fields: _Fields, shape: Sequence[int], new_axis: Callable[[int], Optional[int]]
           ) -> _Fields:
  """Moves each field to ``new_axis(axis)``, merging it over its axis where that is None."""
  out = {}
  for dim, field in fields.items():
    if field.axis is None:
      out[dim] = field
      continue
    axis = new_axis(field.axis)
    out[dim] = field.moved(axis) if axis is not None else field.merged(shape[field.axis])
  return out


def _conservative(in_fields: Sequence[_Fields], shapes: Sequence[Sequence[int]]) -> _Fields:
  """Every output sees everything every input saw."""
  return _union([_remap(f, shape, lambda axis: None) for f, shape in zip(in_fields, shapes)])


def _reshape(in_fields: _Fields, old_shape: Sequence[int], new_shape: Sequence[int]
             ) -> _Fields:
  """An old axis of length ``n > 1`` lives on in the new axis that starts at the same flat
  offset: unchanged if it has length ``n``; repeated ``r`` times if it has length ``n r``
  from merging the next old axes (nearest upsampling, pixel shuffle) unless one of those is
  spatial too (a flatten); as its major part, each element the union of ``n / m`` old
  ones, if it has length ``m`` (space-to-depth). Otherwise the axis is merged away."""
  def minor_axes(shape, axis, product):
    """How many axes after ``axis`` multiply to ``product``; None if no prefix does."""
    for count, total in enumerate(itertools.accumulate(shape[axis + 1:], operator.mul), 1):
      if total == product:
        return count
    return None

  spatial_axes = {field.axis for field in in_fields.values()}
  out = {}
  for dim, field in in_fields.items():
    axis, out[dim] = field.axis, field
    if axis is None:
      continue
    n, offset = old_shape[axis], math.prod(old_shape[:axis])
    out[dim] = field.merged(n)
    candidates = [b for b, m in enumerate(new_shape)
                  if m > 1 and math.prod(new_shape[:b]) == offset]
    if n == 1 or not candidates:
      continue
    b, m = candidates[0], new_shape[candidates[0]]
    if m == n:
      out[dim] = field.moved(b)
    elif m % n == 0 and (count := minor_axes(old_shape, axis, m // n)) is not None:
      if not spatial_axes & set(range(axis + 1, axis + 1 + count)):
        out[dim] = dataclasses.replace(field, axis=b, repeat=field.repeat * (m // n))
    elif n % m == 0 and minor_axes(new_shape, b, n // m) is not None:
      out[dim] = _Field(b, *field.covering(0, n // m - 1),
                        field.jump * Fraction(n // m, field.repeat))
  return out


def _dot_general(eqn, in_fields, shapes) -> _Fields:
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
  lhs_free = [a for a in range(len(shapes[0])) if a not in lhs_contract + lhs_batch]
  rhs_free = [a for a in range(len(shapes[1])) if a not in rhs_contract + rhs_batch]

  def axis_map(batch, free, offset):
    def new_axis(axis):
      if axis in batch:
        return batch.index(axis)
      if axis in free:
        return len(lhs_batch) + offset + free.index(axis)
      return None  # contracted
    return new_axis

  return _union([_remap(in_fields[0], shapes[0], axis_map(lhs_batch, lhs_free, 0)),
                 _remap(in_fields[1], shapes[1], axis_map(rhs_batch, rhs_free, len(lhs_free)))])


def _conv(eqn, in_fields, shapes) -> _Fields:
  params = eqn.params
  lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
  out = {}
  for dim, field in in_fields[0].items():
    if field.axis is None:
      out[dim] = field
    elif field.axis == lhs_spec[0]:
      out[dim] = field.moved(out_spec[0])
    elif field.axis == lhs_spec[1]:
      out[dim] = field.merged(shapes[0][field.axis])  # channels are contracted
    else:
      i = list(lhs_spec[2:]).index(field.axis)
      out[dim] = field.windowed(
          shapes[1][rhs_spec[2 + i]], params["window_strides"][i], params["padding"][i][0],
          params["lhs_dilation"][i], params["rhs_dilation"][i]).moved(out_spec[2 + i])
  return _union([out, _conservative(in_fields[1:], shapes[1:])])


def _reduce_window(eqn, in_fields, shapes) -> list[_Fields]:
  params = eqn.params
  num_operands = len(eqn.outvars)

  def window(fields):
    out = {}
    for dim, field in fields.items():
      a = field.axis
      out[dim] = field if a is None else field.windowed(
          params["window_dimensions"][a], params["window_strides"][a], params["padding"][a][0],
          params["base_dilation"][a], params["window_dilation"][a])
    return out
  return [window(f) for f in in_fields[:num_operands]]


def _pad(eqn, in_fields, shapes) -> _Fields:
  config = eqn.params["padding_config"]
  out = {}
  for dim, field in in_fields[0].items():
    if field.axis is None:
      out[dim] = field
    else:
      before, _, interior = config[field.axis]
      spread = dataclasses.replace(field, repeat=field.repeat * (1 + interior))
      out[dim] = spread.shifted(-before)
  return out


def _slice(eqn, in_fields, shapes) -> _Fields:
  starts, strides = eqn.params["start_indices"], eqn.params["strides"]
  out = {}
  for dim, field in in_fields[0].items():
    a = field.axis
    out[dim] = field if a is None else field.shifted(starts[a], strides[a] if strides else 1)
  return out


def _concatenate(eqn, in_fields, shapes) -> _Fields:
  """Along other axes the union; along a spatial axis the position map of the longest
  piece is extended over the whole axis, so that padding by concatenation (``jnp.pad``'s
  reflect and edge modes) counts like zero padding."""
  axis = eqn.params["dimension"]
  offsets = list(itertools.accumulate([0] + [shape[axis] for shape in shapes]))
  out = _union(in_fields)
  for dim in out:
    pieces = [(shape[axis], offset, f[dim]) for f, shape, offset
              in zip(in_fields, shapes, offsets) if dim in f and f[dim].axis == axis]
    if pieces:
      _, offset, field = max(pieces, key=lambda piece: piece[0])
      out[dim] = field.shifted(-offset)
  return out


def _split(eqn, in_fields, shapes) -> list[_Fields]:
  axis, offset, outs = eqn.params["axis"], 0, []
  for size in eqn.params["sizes"]:
    outs.append({dim: field.shifted(offset) if field.axis == axis else field
                 for dim, field in in_fields[0].items()})
    offset += size
  return outs


def _single(eqn, in_fields, shapes) -> Optional[_Fields]:
  """The transfer rule of single-output structural primitives; None if not one of them."""
  name, params = eqn.primitive.name, eqn.params
  if name == "conv_general_dilated":
    return _conv(eqn, in_fields, shapes)
  if name == "dot_general":
    return _dot_general(eqn, in_fields, shapes)
  if name == "pad":
    return _pad(eqn, in_fields, shapes)
  if name == "slice":
    return _slice(eqn, in_fields, shapes)
  if name == "concatenate":
    return _concatenate(eqn, in_fields, shapes)
  if name == "rev":
    return {dim: field.shifted(shapes[0][field.axis] - 1, -1)
            if field.axis in params["dimensions"] else field
            for dim, field in in_fields[0].items()}
  if name == "transpose":
    permutation = list(params["permutation"])
    return _remap(in_fields[0], shapes[0], permutation.index)
  if name == "broadcast_in_dim":
    target, dims = params["shape"], params["broadcast_dimensions"]
    # A length-1 axis broadcast to many positions repeats one value: no longer spatial.
    return _remap(in_fields[0], shapes[0],
                  lambda a: dims[a] if shapes[0][a] == target[dims[a]] else None)
  if name == "reshape" and params["dimensions"] is None:
    return _reshape(in_fields[0], shapes[0], eqn.outvars[0].aval.shape)
  if name == "squeeze":
    dropped = params["dimensions"]
    return _remap(in_fields[0], shapes[0], lambda a: None if a in dropped
                  else a - sum(d < a for d in dropped))
  if name in _REDUCTIONS:
    axes = params["axes"]
    return _remap(in_fields[0], shapes[0], lambda a: None if a in axes
                  else a - sum(d < a for d in axes))
  return None


def _broadcasts(shapes: Sequence[Sequence[int]], out_shapes: Sequence[Sequence[int]]) -> bool:
  """Whether the operands are scalars or match the (single) output shape up to length 1."""
  if len(set(out_shapes)) != 1:
    return False
  out_shape = out_shapes[0]
  return all(shape == () or (len(shape) == len(out_shape)
                             and all(n in (1, m) for n, m in zip(shape, out_shape)))
             for shape in shapes)


def _inner_jaxpr(eqn) -> Optional[core.Jaxpr]:
  """The jaxpr a call-like primitive (jit, custom_jvp_call, remat, ...) runs on its operands."""
  if eqn.primitive.name in ("cond", "while", "scan"):
    return None
  for jaxpr in core.jaxprs_in_params(eqn.params):
    if len(jaxpr.invars) == len(eqn.invars) and len(jaxpr.outvars) == len(eqn.outvars):
      return jaxpr
  return None


def _propagate(jaxpr: core.Jaxpr, in_fields: Sequence[_Fields]) -> list[_Fields]:
  """Fields of ``jaxpr``'s outputs given those of its inputs (constants have none)."""
  env: dict[core.Var, _Fields] = dict(zip(jaxpr.invars, in_fields))

  def read(var) -> _Fields:
    return {} if isinstance(var, core.Literal) else env.get(var, {})

  for eqn in jaxpr.eqns:
    fields = [read(v) for v in eqn.invars]
    if not any(fields):
      continue
    shapes = [getattr(v.aval, "shape", ()) for v in eqn.invars]
    out_shapes = [getattr(v.aval, "shape", ()) for v in eqn.outvars]
    inner = _inner_jaxpr(eqn)
    name = eqn.primitive.name
    if inner is not None:
      outs = _propagate(inner, fields)
    elif name in _WINDOW_REDUCTIONS:
      outs = _reduce_window(eqn, fields, shapes)
    elif name == "split":
      outs = _split(eqn, fields, shapes)
    elif (single := _single(eqn, fields, shapes)) is not None:
      outs = [single]
    elif name not in _MIXING_PRIMITIVES and _broadcasts(shapes, out_shapes):
      out_shape = out_shapes[0]
      outs = [_union([_remap(f, shape, lambda a, shape=shape: a if shape[a] == out_shape[a]
                             else None) for f, shape in zip(fields, shapes)])
              ] * len(eqn.outvars)  # elementwise; length-1 axes repeat one value
    else:
      outs = [_conservative(fields, shapes)] * len(eqn.outvars)
    env.update(zip(eqn.outvars, outs))
  return [read(v) for v in jaxpr.outvars]


def _as_receptive_field(fields: _Fields, num_axes: int) -> Optional[ReceptiveField]:
  if not fields:
    return None
  axes = [fields.get(d) for d in range(num_axes)]
  return ReceptiveField(
      size=tuple(float(f.hi - f.lo + 1) for f in axes),
      jump=tuple(None if f.axis is None else float(f.effective_jump) for f in axes),
      start=tuple(float((f.lo + f.hi) / 2) for f in axes))


def receptive_fields_of_jaxpr(closed_jaxpr: core.ClosedJaxpr, input_index: int,
                              spatial_axes: Sequence[int] = (1, 2)
                              ) -> list[Optional[ReceptiveField]]:
  """Receptive fields of every output of ``closed_jaxpr`` with respect to its input
  variable ``input_index`` (``None`` for outputs that do not depend on it).

  ``spatial_axes`` are the input's spatial axes, ``(1, 2)`` for ``[B, H, W, C]``.
  """
  jaxpr = closed_jaxpr.jaxpr
  in_fields: list[_Fields] = [{} for _ in jaxpr.invars]
  in_fields[input_index] = {d: _Field(axis, Fraction(0), Fraction(0), Fraction(1))
                            for d, axis in enumerate(spatial_axes)}
  return [_as_receptive_field(f, len(spatial_axes)) for f in _propagate(jaxpr, in_fields)]


def receptive_fields(fun: Callable, *args: Any, input_argnum: int = 0,
                     spatial_axes: Sequence[int] = (1, 2)) -> Any:
  """Receptive fields of ``fun(*args)``'s outputs with respect to ``args[input_argnum]``.

  Args:
    fun: a jax-traceable function; ``args`` may be arrays or ``jax.ShapeDtypeStruct``.
    input_argnum: which argument is the image batch (a single array).
    spatial_axes: its spatial axes, ``(1, 2)`` for ``[B, H, W, C]``.

  Returns:
    The output pytree with a :class:`ReceptiveField` (or ``None`` where an output does not
    depend on the input) in place of each array.
  """
  closed, out_shape = jax.make_jaxpr(fun, return_shape=True)(*args)
  input_index = sum(len(jax.tree.leaves(a)) for a in args[:input_argnum])
  fields = receptive_fields_of_jaxpr(closed, input_index, spatial_axes)
  return jax.tree.unflatten(jax.tree.structure(out_shape), fields)
