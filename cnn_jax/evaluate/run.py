"""Evaluating a run: the task's metrics over a split, its figures, ``eval/<split>.json``,
the learning curves, the diagnosis and the report.

Used at the end of training and by ``python -m cnn_jax eval --workdir W``. Everything
task-specific (which metrics, which figures) comes from the task.
"""

import json
import os

import jax

from cnn_jax import config as config_lib
from cnn_jax.data import display_name
from cnn_jax.evaluate.diagnose import Diagnosis, diagnose
from cnn_jax.evaluate.report import write_report
from cnn_jax.figures.curves import plot_learning_curves
from cnn_jax.metrics.classification import to_jsonable
from cnn_jax.train.logging import read_history
from cnn_jax.train.session import Session, load_run
from cnn_jax.train.state import count_params

EVAL_DIR = "eval"


def run_diagnosis(workdir: str, session: Session, best_step: int | None) -> Diagnosis:
  """The over/underfitting verdict of the run's history, pointing at its best checkpoint."""
  return diagnose(read_history(workdir), chance=session.task.chance_accuracy(session.data),
                  primary=session.primary, accuracy=session.task.accuracy_metric,
                  checkpoints={"best": best_step, "steps_per_epoch": session.steps_per_epoch})


def evaluate_and_report(workdir: str, session: Session, state, split: str, checkpoint_step: int,
                        best_step: int | None) -> dict:
  """Evaluates ``state`` on ``split``; writes ``eval/<split>.json``, figures and the report.

  Every process evaluates (the batches are sharded over all devices); only process 0
  writes. Returns the task's metrics plus ``checkpoint_step``, ``json_path`` and
  ``diagnosis``.
  """
  task, data = session.task, session.data
  results, outputs = task.evaluate(session.evaluator, state, data, split)
  results["checkpoint_step"] = checkpoint_step
  results["summary"] = task.describe_results(results)
  if jax.process_index() != 0:
    return results
  out_dir = os.path.join(workdir, EVAL_DIR)
  os.makedirs(out_dir, exist_ok=True)
  figures = task.figures(state, data, split, results, outputs, out_dir)
  json_path = os.path.join(out_dir, f"{split}.json")
  with open(json_path, "w") as f:
    json.dump(to_jsonable({**results, "class_names": data.class_names}), f, indent=1)

  history = read_history(workdir)
  if history:
    title = f"{session.config.model.name} on {display_name(session.config.dataset)}"
    figures = {"learning_curves": plot_learning_curves(
        history, os.path.join(workdir, "learning_curves.png"), primary=session.primary,
        title=title), **figures}
  diagnosis = run_diagnosis(workdir, session, best_step)
  params = count_params(state)
  write_report(workdir, config=config_lib.to_dict(session.config),
               dataset_info={"name": display_name(session.config.dataset),
                             "class_names": data.class_names, "split_sizes": data.sizes(),
                             "image_shape": list(data.image_shape)},
               model_info={"name": session.config.model.name, "task": task.name,
                           "num_params": sum(params.values()),
                           **({f"{k}_params": v for k, v in params.items()}
                              if len(params) > 1 else {})},
               history=history, eval_results=saved_results(out_dir), diagnosis=diagnosis,
               figures=figures)
  return {**results, "json_path": json_path, "diagnosis": diagnosis}


def saved_results(eval_dir: str) -> dict[str, dict]:
  """Every ``eval/<split>.json`` written so far, for the report (curves left out)."""
  results = {}
  for split in ("test", "val", "train"):
    path = os.path.join(eval_dir, f"{split}.json")
    if os.path.exists(path):
      with open(path) as f:
        results[split] = {k: v for k, v in json.load(f).items() if k not in ("curves",)}
  return results


def evaluate_run(workdir: str, checkpoint: str = "best", split: str = "test") -> dict:
  """Restores a checkpoint of the run in ``workdir`` and evaluates it on ``split``.

  Args:
    checkpoint: ``"best"`` (by the run's primary metric), ``"latest"``, or a step.
    split: ``"test"``, ``"val"`` or ``"train"``.

  Returns:
    The metrics, with ``json_path`` the written ``eval/<split>.json``.
  """
  session, state, step, best = load_run(workdir, checkpoint)
  return evaluate_and_report(workdir, session, state, split, step, best)
