"""Samples from a trained generator: the library side of ``python -m cnn_jax sample``.

A GAN run draws a grid of ``num`` samples from fixed noise (the same noise for every
checkpoint of the run with one ``seed``, so grids of two checkpoints compare sample by
sample); a CycleGAN run draws ``num`` test images of each domain, translated and
translated back.
"""

import os

from cnn_jax.errors import CnnJaxError


def sample(workdir: str, num: int = 64, out: str = "grid.png", checkpoint: str = "best",
           seed: int | None = None) -> str:
  """Restores ``checkpoint`` (``"best"``, ``"latest"`` or a step) of the run in ``workdir``
  and writes its samples to the PNG ``out``; ``seed`` (default: the run's) picks the noise.
  Returns the written path."""
  from cnn_jax.train.session import load_run
  if num < 1:
    raise CnnJaxError(f"--num must be >= 1, got {num}.")
  session, state, _, _ = load_run(workdir, checkpoint)
  draw = getattr(session.task, "draw_samples", None)
  if draw is None:
    raise CnnJaxError(f"The run in {workdir} is a {session.task.name!r} run, which has no "
                      "generator; sample needs a gan or cyclegan run.")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  return draw(state, session.data, num, seed, out)
