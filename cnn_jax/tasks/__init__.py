"""Tasks: what a task adds to the shared loop (outputs, loss, predictions, metrics).

A :class:`Task` is chosen by ``config.task.name`` (default ``"classification"``) and
parametrizes the generic step functions in :mod:`cnn_jax.tasks.steps`.
"""

import dataclasses
from typing import Callable

import jax
import ml_collections

from cnn_jax.registry import Registry

TASKS = Registry("task")


@dataclasses.dataclass(frozen=True)
class Task:
  """How a task turns model outputs into losses, predictions and scores.

  Attributes:
    name: the registered name.
    num_outputs: model outputs for a dataset with ``num_classes`` classes.
    loss: ``(outputs [B, O], labels [B]) -> per-example loss [B]`` for training.
    eval_loss: the same without training-only terms (label smoothing).
    decide: ``outputs -> decision scores [B, K]`` whose argmax is the predicted class
      (applies e.g. a binary decision threshold).
    probabilities: ``outputs -> class probabilities [B, K]`` (for ROC curves).
  """
  name: str
  num_outputs: Callable[[int], int]
  loss: Callable[[jax.Array, jax.Array], jax.Array]
  eval_loss: Callable[[jax.Array, jax.Array], jax.Array]
  decide: Callable[[jax.Array], jax.Array]
  probabilities: Callable[[jax.Array], jax.Array]
  threshold: float | None = None


def get_task(config: ml_collections.ConfigDict) -> Task:
  """The task named by ``config.task.name`` (``classification`` when there is no section)."""
  section = config.get("task") or ml_collections.ConfigDict({"name": "classification"})
  return TASKS.get(section.name)(section, config)


from cnn_jax.tasks import binary, classification  # noqa: E402,F401  (registers the tasks)
