"""An experiment end to end: train (``cnn_jax.train.loop.fit``), then evaluate the final
state on the test split, write the figures and the report, and diagnose the fit."""

import json
import os

import ml_collections

from cnn_jax.evaluate.run import EVAL_DIR, evaluate_and_report, run_diagnosis
from cnn_jax.train.loop import fit


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints) and evaluates it.

  Re-running a finished run does not evaluate again when ``eval/test.json`` already
  belongs to its final step (``python -m cnn_jax eval`` re-evaluates on request).

  Returns:
    ``{"val": last validation metrics, "test": test metrics, "steps": int,
    "diagnosis": Diagnosis, "task": Task, "resumed_from": int, "already_complete": bool}``.
  """
  result = fit(config, workdir)
  session, state = result.session, result.state
  steps = int(state.step)
  saved = os.path.join(workdir, EVAL_DIR, "test.json")
  test = None
  if result.already_complete and os.path.exists(saved):
    with open(saved) as f:
      test = json.load(f)
    if test.get("checkpoint_step") != steps:
      test = None
  if test is None:
    test = evaluate_and_report(workdir, session, state, "test", steps, result.best_step)
  last = result.history[-1] if result.history else {}
  return {"val": {k[4:]: v for k, v in last.items() if k.startswith("val_")}, "test": test,
          "steps": steps, "diagnosis": run_diagnosis(workdir, session, result.best_step),
          "task": session.task, "resumed_from": result.resumed_from,
          "already_complete": result.already_complete}
