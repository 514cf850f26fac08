"""Reconstruction metrics (autoencoders, denoising): per-example errors and masked sums.

:func:`per_example` gives each example's mean squared error, mean absolute error and PSNR
(for images in [0, 1], so the data range is 1); tasks sum them over the real rows of each
batch as ``(sum, count)`` metrics.

``psnr`` is the mean of the per-image PSNRs (the usual figure in denoising papers), not
the PSNR of the mean MSE; an exact reconstruction counts as ``MAX_PSNR`` dB so that one
perfect image cannot make the mean infinite.
"""

import jax
import jax.numpy as jnp

from cnn_jax.errors import ShapeError

# PSNR of an exact reconstruction: MSE is floored at 10 ** (-MAX_PSNR / 10).
MAX_PSNR = 100.0


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
