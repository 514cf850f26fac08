"""Tasks: what a task adds to the one training loop (inputs, networks, steps, metrics,
figures). See :mod:`cnn_jax.tasks.base` for the interface.

A task is chosen by ``config.task.name`` (default ``"classification"``).
"""

import ml_collections

from cnn_jax.tasks import autoencoder, classification, segmentation  # noqa: F401  (register)
from cnn_jax.tasks import cyclegan, gan  # noqa: F401  (register the GAN tasks)
from cnn_jax.tasks import detection  # noqa: F401  (register)
from cnn_jax.tasks.base import TASKS, SupervisedTask, Task


def task_name(config: ml_collections.ConfigDict) -> str:
  """``config.task.name``, or ``"classification"`` when the config has no task section."""
  section = config.get("task")
  return section.get("name", "classification") if section else "classification"


def get_task(config: ml_collections.ConfigDict, data, load_run=None) -> Task:
  """The task named by the config, built for the prepared ``data``; ``load_run`` lets it
  restore other runs (see :class:`Task`)."""
  return TASKS.get(task_name(config))(config, data, load_run=load_run)


__all__ = ["TASKS", "SupervisedTask", "Task", "get_task", "task_name"]
