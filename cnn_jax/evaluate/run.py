"""Evaluating a run: metrics over a split, figures, ``eval/<split>.json`` and the report.

Used at the end of training and by ``python -m cnn_jax eval --workdir W``.
"""

import functools
import json
import os

import jax
import numpy as np

from cnn_jax import config as config_lib
from cnn_jax.data import pipeline
from cnn_jax.metrics import classification as metrics_lib
from cnn_jax.evaluate.diagnose import diagnose
from cnn_jax.evaluate.report import write_report
from cnn_jax.errors import CnnJaxError
from cnn_jax.tasks import Task, steps
from cnn_jax.train import parallel
from cnn_jax.train.logging import read_history


class Evaluator:
  """Jit-compiled, data-parallel evaluation over whole splits (padded, masked batches)."""

  def __init__(self, mesh, batch_size: int, num_classes: int, task: Task, normalize=None):
    self.mesh, self.batch_size, self.num_classes, self.task = mesh, batch_size, num_classes, task
    replicated = parallel.replicated(mesh)
    self.step = jax.jit(functools.partial(steps.eval_step, task=task, normalize=normalize),
                        in_shardings=(replicated, replicated, parallel.batch_sharded(mesh)),
                        out_shardings=(replicated, replicated), donate_argnums=1)

  def __call__(self, state, images: np.ndarray, labels: np.ndarray,
               with_scores: bool = False) -> tuple[dict, np.ndarray | None]:
    """Metrics dict (see ``metrics.compute``) and, if asked, probabilities ``[N, K]``."""
    stats = jax.device_put(metrics_lib.ClassificationStats.empty(self.num_classes),
                           parallel.replicated(self.mesh))
    scores = metrics_lib.ScoreCollector() if with_scores else None
    local = self.batch_size // jax.process_count()
    start = jax.process_index() * local
    for batch in pipeline.eval_batches(images, labels, self.batch_size):
      mine = {k: v[start:start + local] for k, v in batch.items()}
      stats, probs = self.step(state, stats, parallel.shard_batch(mine, self.mesh))
      if scores is not None:
        scores.add(jax.device_get(probs), batch["label"], batch["mask"])
    return metrics_lib.compute(stats), (scores.scores if scores else None)


def write_split_figures(out_dir: str, split: str, results: dict, probs: np.ndarray,
                        images: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
  """Confusion matrices, ROC/PR curves, per-class bars and misclassified examples."""
  from cnn_jax.figures import classification as plots
  os.makedirs(out_dir, exist_ok=True)
  path = lambda name: os.path.join(out_dir, f"{split}_{name}.png")  # noqa: E731
  figures = {
      "confusion_matrix": plots.plot_confusion_matrix(
          results["confusion_matrix"], path("confusion_matrix"), class_names=class_names,
          title=f"Confusion matrix ({split})"),
      "per_class": plots.plot_per_class(results["per_class"], path("per_class"),
                                        class_names=class_names, title=f"Per-class ({split})"),
  }
  if len(class_names) == 2:
    curves = metrics_lib.binary_curves(probs[:, 1], labels)
  else:
    curves = metrics_lib.one_vs_rest_curves(probs, labels, class_names)
  figures["roc"] = plots.plot_roc(curves, path("roc"), title=f"ROC ({split})")
  figures["pr"] = plots.plot_pr(curves, path("pr"), title=f"Precision-recall ({split})")
  figures["misclassified"] = plots.plot_misclassified(
      images, labels, probs.argmax(-1), path("misclassified"), class_names=class_names)
  return figures, curves


def evaluate_and_report(workdir: str, config, data, state, evaluator: Evaluator, split: str,
                        checkpoint_step: int) -> dict:
  """Evaluates ``state`` on ``split``; writes ``eval/<split>.json``, figures and the report.

  Every process evaluates (the batches are sharded over all devices); only process 0
  writes. Returns the metrics (``metrics.compute`` plus AUC values and ``json_path``).
  """
  images, labels = data.splits[split]
  results, probs = evaluator(state, images, labels, with_scores=True)
  if jax.process_index() != 0:
    return results
  out_dir = os.path.join(workdir, "eval")
  figures, curves = write_split_figures(out_dir, split, results, probs, images, labels,
                                        data.class_names)
  if "auc" in curves:
    results["auc"], results["average_precision"] = curves["auc"], curves["average_precision"]
    results["best_f1"] = curves["best_f1"]
    if evaluator.task.threshold is not None:
      results["at_threshold"] = metrics_lib.binary_metrics_at_threshold(
          probs[:, 1], labels, evaluator.task.threshold)
      results["at_threshold"]["threshold"] = evaluator.task.threshold
  else:
    results["macro_auc"] = curves["macro_auc"]
    results["macro_average_precision"] = curves["macro_average_precision"]
  results["checkpoint_step"] = checkpoint_step
  json_path = os.path.join(out_dir, f"{split}.json")
  with open(json_path, "w") as f:
    json.dump(metrics_lib.to_jsonable({**results, "class_names": data.class_names,
                                       "curves": curves}), f, indent=1)

  from cnn_jax.figures import classification as plots
  history = read_history(workdir)
  if history:
    figures = {"learning_curves": plots.plot_learning_curves(
        history, os.path.join(workdir, "learning_curves.png")), **figures}
  diagnosis = diagnose(history, num_classes=data.num_classes)
  num_params = sum(int(np.size(p)) for p in jax.tree.leaves(state.params))
  write_report(workdir, config=config_lib.to_dict(config),
               dataset_info={"name": config.dataset.name, "class_names": data.class_names,
                             "split_sizes": data.sizes(),
                             "image_shape": list(data.image_shape)},
               model_info={"name": config.model.name, "num_params": num_params},
               history=history, eval_results=_saved_results(out_dir), diagnosis=diagnosis,
               figures=figures)
  return {**results, "json_path": json_path}


def _saved_results(eval_dir: str) -> dict[str, dict]:
  """Every ``eval/<split>.json`` written so far, for the report (curves left out)."""
  results = {}
  for split in ("test", "val", "train"):
    path = os.path.join(eval_dir, f"{split}.json")
    if os.path.exists(path):
      with open(path) as f:
        results[split] = {k: v for k, v in json.load(f).items() if k not in ("curves",)}
  return results


def evaluate_run(workdir: str, checkpoint: str = "best", split: str = "test") -> str:
  """Restores a checkpoint of the run in ``workdir`` and evaluates it on ``split``.

  Args:
    checkpoint: ``"best"`` (by the run's ``train.best_metric``), ``"latest"``, or a step.
    split: ``"test"``, ``"val"`` or ``"train"``.

  Returns:
    The metrics, with ``json_path`` the written ``eval/<split>.json``.
  """
  from cnn_jax.train import loop
  from cnn_jax.train.checkpoint import Checkpoints
  config = config_lib.load_json(os.path.join(workdir, "config.json"))
  session = loop.setup(config, workdir, for_eval=True)
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"),
                            best_metric=config.train.best_metric,
                            best_mode=config.train.best_mode, read_only=True)
  steps = checkpoints.steps()
  if not steps:
    raise CnnJaxError(f"{workdir}/checkpoints holds no checkpoint; train first.")
  if checkpoint == "latest":
    step = steps[-1]
  elif checkpoint == "best":
    step = checkpoints.best_step() or steps[-1]
  else:
    try:
      step = int(checkpoint)
    except ValueError:
      raise CnnJaxError(f"--checkpoint must be best, latest or a step number, got "
                        f"{checkpoint!r}.") from None
  state, _, _, step = checkpoints.restore(session.state, step=step)
  checkpoints.close()
  return evaluate_and_report(workdir, config, session.data, state, session.evaluator, split, step)
