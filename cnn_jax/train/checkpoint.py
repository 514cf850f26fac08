"""Checkpoints with orbax: train state + data-iterator state + metadata (config, epoch).

Kept: the last ``keep`` checkpoints plus the best one by a validation metric. Saves are
asynchronous; a step is only visible once orbax has finished writing it, so a run killed
mid-save resumes from the previous step. A latest step that fails to restore (corrupt
files) is reported and the next older step is tried.
"""

import logging
import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from cnn_jax.errors import CnnJaxError

log = logging.getLogger(__name__)


class Checkpoints:
  """A thin wrapper over ``ocp.CheckpointManager`` for one run directory."""

  def __init__(self, directory: str, keep: int = 3, best_metric: str | None = "val_accuracy",
               best_mode: str = "max", read_only: bool = False):
    self.best_metric, self.best_mode = best_metric, best_mode
    keep_policies = [policies.LatestN(n=max(keep, 1))]
    if best_metric:
      keep_policies.append(policies.BestN(
          get_metric_fn=lambda m: m[best_metric], reverse=(best_mode == "min"), n=1,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep_policies),
        create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only)
    self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                         item_names=("state", "data", "meta"))

  def save(self, step: int, state, data_state: dict, meta: dict, metrics: dict | None = None):
    """Starts an async save of ``state`` (a pytree of arrays) and two JSON items."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave(meta)), metrics=metrics, force=True)

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def best_step(self) -> int | None:
    """The kept step with the best ``best_metric`` in its metadata, if any."""
    scored = []
    for step in self.steps():
      metrics = self.restore_meta(step).get("metrics") or {}
      if self.best_metric in metrics:
        scored.append((metrics[self.best_metric], step))
    if not scored:
      return None
    return (max(scored) if self.best_mode == "max" else min(scored))[1]

  def restore_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def restore(self, template, step: int | None = None):
    """Restores ``(state, data_state, meta, step)``.

    Args:
      template: a state pytree (arrays or ``jax.ShapeDtypeStruct`` with shardings) that
        gives the structure, dtypes and placement to restore into.
      step: a specific step; None means the newest readable one (older steps are tried
        when the newest is corrupt). Returns None when there is no checkpoint at all.
    """
    candidates = [step] if step is not None else sorted(self.steps(), reverse=True)
    if step is not None and step not in self.steps():
      raise CnnJaxError(f"No checkpoint for step {step} in {self.manager.directory}; "
                        f"available steps: {self.steps()}.")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    for candidate in candidates:
      try:
        restored = self.manager.restore(candidate, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return restored["state"], restored["data"], restored["meta"], candidate
      except Exception as e:  # corrupt or incompatible files
        if step is not None:
          raise CnnJaxError(f"Checkpoint step {candidate} in {self.manager.directory} cannot be "
                            f"restored: {str(e).splitlines()[0][:300]}") from None
        log.warning("checkpoint step %d is unreadable (%s); trying an older one",
                    candidate, str(e).splitlines()[0][:200])
    if candidates:
      raise CnnJaxError(f"None of the checkpoints {candidates} in {self.manager.directory} can be "
                        "restored (corrupt, or written for a different model/config). Move the "
                        "directory away or use a new --workdir.")
    return None

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()
