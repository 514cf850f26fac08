"""The training loop shared by every task, readable top to bottom.

``fit(config, workdir)``: check the workdir -> build the session (data, task, networks,
state) -> restore the newest good checkpoint if any -> jit-compiled, data-parallel steps
of the task -> per-epoch validation, logs and checkpoints. ``train.max_steps`` (> 0) ends
the run after that many steps instead of ``train.epochs`` epochs, mid-epoch if need be (the
last, partial epoch is validated, logged and checkpointed like a whole one). Re-running it
on the same workdir resumes and ends with exactly the same parameters and metrics as an
uninterrupted run. The loop knows nothing about classification: it sums the ``(sum,
count)`` metrics the task's step returns and logs them as ``train_<name>`` /
``val_<name>``.
"""

import dataclasses
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from cnn_jax import config as config_lib
from cnn_jax.data import pipeline
from cnn_jax.data.device_data import DeviceBatches
from cnn_jax.errors import NonFiniteError
from cnn_jax.tasks.base import means
from cnn_jax.train import parallel, workdir as workdir_lib
from cnn_jax.train.checkpoint import Checkpoints
from cnn_jax.train.logging import MetricsLog, Progress, read_history
from cnn_jax.train.session import Session, checkpoints_for, load_run, setup
from cnn_jax.train.state import TrainState
from cnn_jax.transfer import init_from


def make_train_step(task):
  """``(state, batch) -> state``: the task's step, its metrics added to ``state.totals``
  and the step counter advanced (jitted by the loop and by ``bench``)."""

  def step(state: TrainState, batch: dict) -> TrainState:
    state, metrics = task.train_step(state, batch)
    totals = jax.tree.map(jnp.add, state.totals, metrics)
    return state.replace(step=state.step + 1, totals=totals)

  return step


class StepCache:
  """Jitted train and eval steps shared by the runs of one process (a hyperparameter search).

  Runs whose configs differ only in values the optimizer carries as data (``learning_rate``
  and ``weight_decay`` of any section, see ``cnn_jax.train.optim``) reuse the first such
  run's jitted steps: their states hold arrays of the same shapes, and the first run's
  static parts (modules, optimizer functions), given the later run's arrays, compute what
  the later run's own would. Any other change (a width, the dropout rate) builds new steps.
  """
  TRACED = ("learning_rate", "weight_decay")

  def __init__(self):
    self._entries = {}

  @property
  def compilations(self) -> int:
    """How many distinct train steps were built (each compiles once)."""
    return len(self._entries)

  def share(self, session: Session, state: TrainState):
    """``(session, state, train_step)``: the session with the cached evaluator, the state
    rebuilt on the cached structure and the cached jitted step (new ones on a miss)."""
    flat = config_lib.flat_items(config_lib.to_dict(session.config))
    key = (repr(sorted((k, v) for k, v in flat.items()
                       if k.rsplit(".", 1)[-1] not in self.TRACED)),
           tuple((leaf.shape, str(leaf.dtype)) for leaf in jax.tree.leaves(state)))
    if key not in self._entries:
      mesh = session.mesh
      step = jax.jit(make_train_step(session.task),
                     in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
                     out_shardings=parallel.replicated(mesh), donate_argnums=0)
      self._entries[key] = (step, session.evaluator, jax.tree.structure(state))
    step, evaluator, structure = self._entries[key]
    state = jax.tree.unflatten(structure, jax.tree.leaves(state))
    return dataclasses.replace(session, evaluator=evaluator), state, step


@dataclasses.dataclass
class FitResult:
  """What training leaves: the session, the final state and the checkpoints' state."""
  session: Session
  state: TrainState
  history: list[dict]
  checkpoint_steps: list[int]
  best_step: int | None
  resumed_from: int
  already_complete: bool


def _check_finite(values: dict, what: str, epoch: int, checkpoints: Checkpoints) -> None:
  bad = {k: v for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)}
  if bad:
    kept = checkpoints.steps()
    where = (f"the newest kept checkpoint is step {kept[-1]}" if kept
             else "no checkpoint was kept")
    raise NonFiniteError(
        f"The {what} {', '.join(f'{k}={v}' for k, v in bad.items())} in epoch {epoch} are not "
        f"finite; {where}. Lower optimizer.learning_rate or add warmup (schedule.name="
        "'warmup_cosine').")


def fit(config: ml_collections.ConfigDict, workdir: str,
        on_epoch: Callable[[dict], bool] | None = None,
        step_cache: StepCache | None = None) -> FitResult:
  """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints).

  ``on_epoch(row)`` is called with each epoch's history row once its checkpoint is saved;
  returning True stops the run there (e.g. a pruned search trial). ``step_cache`` shares
  compiled steps with earlier runs of this process (see :class:`StepCache`).
  """
  is_main = jax.process_index() == 0
  if is_main:
    workdir_lib.check_writable(workdir)
    workdir_lib.check_config(config, workdir)
  session = setup(config, workdir)
  if is_main:
    workdir_lib.save_config(config, workdir)  # only once the run can start
  tcfg, data, mesh, task = config.train, session.data, session.mesh, session.task
  per_epoch, total_steps = session.steps_per_epoch, session.total_steps

  checkpoints = checkpoints_for(session, workdir)
  state, data_state = session.state, {"next_index": 0}
  restored = checkpoints.restore(state)
  if restored is not None:
    state, data_state, _, _ = restored
  elif config.model.get("init_from"):  # a fresh run starts from other weights; resume wins
    state = jax.device_put(init_from.initialize(state, config, load_run, data.indices),
                           parallel.replicated(mesh))
  start_step = int(state.step)

  if tcfg.get("on_device_data"):  # the whole split resident on the device(s)
    train_iter = DeviceBatches(data.splits["train"], batch_size=tcfg.batch_size,
                               seed=config.seed, mesh=mesh)
  else:  # host batches, sharded onto the device(s) one step ahead of use
    train_iter = parallel.DevicePrefetch(iter(pipeline.train_batches(
        data.splits["train"], batch_size=tcfg.batch_size, seed=config.seed,
        num_steps=total_steps, process_index=jax.process_index(),
        process_count=jax.process_count())), mesh)
  train_iter.set_state(data_state)
  session, state, train_step = (step_cache or StepCache()).share(session, state)

  log = MetricsLog(workdir, start_step, enabled=is_main)
  progress = Progress(total_steps, start_step, enabled=tcfg.progress and is_main)
  if start_step >= total_steps:
    progress.write(f"the run in {workdir} is complete ({start_step} steps); "
                   "`python -m cnn_jax eval --workdir ...` re-evaluates a checkpoint")
  elif start_step:
    progress.write(f"resumed from step {start_step} (epoch {start_step // per_epoch}, "
                   f"{start_step % per_epoch} steps into the next)")
  meta = {"config": config_lib.to_dict(config), "steps_per_epoch": per_epoch}
  epoch_start = time.perf_counter()
  try:
    for step in range(start_step + 1, total_steps + 1):
      state = train_step(state, next(train_iter))
      show = step % tcfg.log_every_steps == 0
      progress.update(step, tcfg.batch_size,
                      task.progress_metrics(means(state.totals)) if show else None)
      epoch = step // per_epoch
      if step % per_epoch == 0 or step == total_steps:
        epoch = epoch if step % per_epoch == 0 else round(step / per_epoch, 3)
        train_metrics = means(state.totals)
        _check_finite(train_metrics, "training metrics", epoch, checkpoints)
        val_metrics = session.evaluator.metrics(state, data.splits["val"])
        _check_finite(val_metrics, "validation metrics", epoch, checkpoints)
        row = {"epoch": epoch, "step": step,
               **{f"train_{k}": v for k, v in train_metrics.items()},
               **{f"val_{k}": v for k, v in val_metrics.items()},
               "learning_rate": float(session.schedule(step)),
               "epoch_time_s": round(time.perf_counter() - epoch_start, 3)}
        log.write(row)
        shown = ["  ".join(f"{k} {v:.4f}" for k, v in task.progress_metrics(part).items())
                 for part in (train_metrics, val_metrics)]
        progress.write(f"epoch {epoch}/{round(total_steps / per_epoch, 3):g}  train {shown[0]}  |  "
                       f"val {shown[1]}")
        state = state.replace(totals=jax.tree.map(jnp.zeros_like, state.totals))
        checkpoints.save(step, state, train_iter.get_state(), {**meta, "epoch": epoch},
                         metrics={k: v for k, v in row.items()
                                  if k.startswith(("train_", "val_"))})
        epoch_start = time.perf_counter()
        if on_epoch is not None and on_epoch(row):
          break
      elif tcfg.checkpoint_every_steps and step % tcfg.checkpoint_every_steps == 0:
        checkpoints.save(step, state, train_iter.get_state(), {**meta, "epoch": epoch})
    checkpoints.wait()
    kept, best = checkpoints.steps(), checkpoints.best_step()
  finally:
    progress.close()
    log.close()
    checkpoints.close()
  return FitResult(session, state, read_history(workdir), kept, best, start_step,
                   start_step >= total_steps)
