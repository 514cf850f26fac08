"""Reconstruction metrics (autoencoders, denoising): per-example errors and masked sums.

:func:`per_example` gives each example's mean squared error, mean absolute error and PSNR
(for images in [0, 1], so the data range is 1). A :class:`ReconstructionStats` pytree sums
them over an evaluation; :func:`update` is pure and jittable and skips padded rows
through a ``mask``::

  stats = ReconstructionStats.empty()
  for batch in eval_batches:                   # update usually lives in a jitted step
    stats = update(stats, recon, batch["image"], batch["valid"])
  results = compute(stats)                     # {"mse": ..., "mae": ..., "psnr": ...}

``psnr`` is the mean of the per-image PSNRs (the usual figure in denoising papers), not
the PSNR of the mean MSE; an exact reconstruction counts as ``MAX_PSNR`` dB so that one
perfect image cannot make the mean infinite.
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.errors import ShapeError

# PSNR of an exact reconstruction: MSE is floored at 10 ** (-MAX_PSNR / 10).
MAX_PSNR = 100.0
METRICS = ("mse", "mae", "psnr")


def per_example(recon: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
  """Per-example errors of ``recon`` against ``target``, both ``[B, ...]`` in [0, 1].

  Returns:
    float32 ``[B]`` arrays ``"mse"``, ``"mae"`` (means over every pixel and channel) and
    ``"psnr"`` = ``10 log10(1 / mse)`` in dB, at most ``MAX_PSNR``.
  """
  if recon.shape != target.shape or recon.ndim < 2:
    raise ShapeError(f"reconstruction {list(recon.shape)} and target {list(target.shape)} "
                     "must have the same shape [B, ...]")
  diff = recon.astype(jnp.float32) - target.astype(jnp.float32)
  axes = tuple(range(1, diff.ndim))
  mse = jnp.mean(diff * diff, axis=axes)
  mae = jnp.mean(jnp.abs(diff), axis=axes)
  psnr = -10.0 * jnp.log10(jnp.maximum(mse, 10.0 ** (-MAX_PSNR / 10.0)))
  return {"mse": mse, "mae": mae, "psnr": psnr}


@flax.struct.dataclass
class ReconstructionStats:
  """Sums over the real examples seen so far (a pytree: pass it through ``jit``).

  Attributes:
    count: int32 ``[]``, the number of real (unmasked) examples.
    sums: float32 ``[]`` per metric of :data:`METRICS`, the summed per-example values.
  """
  count: jax.Array
  sums: dict[str, jax.Array]

  @classmethod
  def empty(cls) -> "ReconstructionStats":
    return cls(count=jnp.zeros((), jnp.int32),
               sums={name: jnp.zeros((), jnp.float32) for name in METRICS})


def update(stats: ReconstructionStats, recon: jax.Array, target: jax.Array,
           mask: jax.Array) -> ReconstructionStats:
  """Adds one batch to ``stats``; pure and jittable.

  Args:
    stats: the sums so far.
    recon: ``[B, H, W, C]`` reconstructions in [0, 1].
    target: ``[B, H, W, C]`` the images they should match.
    mask: ``[B]`` bool or 0/1, false for padded rows.
  """
  values = per_example(recon, target)
  mask = mask.astype(bool)
  return ReconstructionStats(  # where, not a product: padded rows may hold NaN
      count=stats.count + jnp.sum(mask.astype(jnp.int32)),
      sums={name: stats.sums[name] + jnp.sum(jnp.where(mask, values[name], 0.0))
            for name in METRICS})


def compute(stats: ReconstructionStats) -> dict[str, float]:
  """Means over the real examples: ``{"mse", "mae", "psnr"}`` as Python floats (NaN if
  no example was seen)."""
  count = int(stats.count)
  return {name: float(np.asarray(stats.sums[name])) / count if count else float("nan")
          for name in METRICS}
