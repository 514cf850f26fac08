"""The training loop shared by every experiment, readable top to bottom.

``train(config, workdir)``: prepare data -> build model and state -> restore the latest
checkpoint if any -> jit-compiled, data-parallel steps -> per-epoch validation, logs and
checkpoints -> final test evaluation. Re-running it on the same workdir resumes and ends
with exactly the same parameters and metrics as an uninterrupted run.
"""

import dataclasses
import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax import config as config_lib
from cnn_jax import data as data_lib
from cnn_jax import models
from cnn_jax.data import pipeline
from cnn_jax.data.device_data import DeviceBatches
from cnn_jax.errors import CnnJaxError, ConfigError
from cnn_jax.evaluate.diagnose import diagnose
from cnn_jax.evaluate.run import Evaluator, evaluate_and_report
from cnn_jax.tasks import Task, get_task, steps
from cnn_jax.train import optim, parallel
from cnn_jax.train.checkpoint import Checkpoints
from cnn_jax.train.logging import MetricsLog, Progress, read_history
from cnn_jax.train.state import TrainState, check_input_shape, create_train_state, zero_totals


def build_model(config: ml_collections.ConfigDict, num_classes: int):
  """``config.model.name`` with every other ``config.model`` key as a constructor option."""
  options = {k: v for k, v in config.model.items() if k != "name"}
  if "dtype" in options:
    options["dtype"] = jnp.dtype(options["dtype"])
  return models.create(config.model.name, num_classes=num_classes, **options)


def check_workdir_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Saves ``config.json``; if the workdir already has a different one, refuses to mix runs."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    old_flat = config_lib.flat_items(config_lib.to_dict(config_lib.load_json(path)))
    new_flat = config_lib.flat_items(config_lib.to_dict(config))
    changed = sorted(k for k in old_flat.keys() | new_flat.keys()
                     if old_flat.get(k) != new_flat.get(k))
    if changed:
      raise ConfigError(
          f"{workdir} already holds a run with a different config (changed: "
          f"{', '.join(changed[:8])}). Resuming would mix two experiments; use a new "
          "--workdir, or repeat the original command to resume.")
    return
  config_lib.save_json(config, path)


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


@dataclasses.dataclass
class Session:
  """Everything a run needs, built from its config (shared by training and evaluation)."""
  data: data_lib.PreparedData
  model: Any
  mesh: Any
  state: TrainState
  task: Task
  schedule: Any
  evaluator: Evaluator
  steps_per_epoch: int
  total_steps: int


def setup(config: ml_collections.ConfigDict, workdir: str, for_eval: bool = False) -> Session:
  """Data, model, mesh, initial state and evaluator for ``config`` in ``workdir``.

  With ``for_eval`` the workdir's ``config.json`` is neither checked nor written.
  """
  if not for_eval and jax.process_index() == 0:
    check_workdir_config(config, workdir)
  tcfg = config.train
  data = data_lib.prepare(config, workdir)
  task = get_task(config)
  model = build_model(config, task.num_outputs(data.num_classes))
  check_input_shape(model, data.image_shape, config.model.name)
  mesh = parallel.make_mesh(tcfg.num_devices)
  parallel.check_batch_size(tcfg.batch_size, mesh)
  per_epoch = pipeline.steps_per_epoch(data.sizes()["train"], tcfg.batch_size)
  if per_epoch == 0:
    raise ConfigError(f"train.batch_size={tcfg.batch_size} exceeds the {data.sizes()['train']} "
                      "training examples; lower it.")
  total_steps = per_epoch * tcfg.epochs
  schedule = optim.make_schedule(config, per_epoch, total_steps)
  tx = optim.make_optimizer(config, schedule)
  init = jax.jit(lambda: create_train_state(model, tx, config.seed, data.image_shape),
                 out_shardings=parallel.replicated(mesh))
  eval_batch_size = _round_up(tcfg.eval_batch_size, mesh.size * jax.process_count())
  evaluator = Evaluator(mesh, eval_batch_size, data.num_classes, task, data.normalizer())
  return Session(data, model, mesh, init(), task, schedule, evaluator, per_epoch, total_steps)


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints).

  Returns:
    ``{"val": metrics, "test": metrics, "steps": int, "diagnosis": Diagnosis}`` for the
    final state; ``workdir`` then also holds ``eval/test.json``, figures and the report.
  """
  session = setup(config, workdir)
  tcfg, data, mesh, state = config.train, session.data, session.mesh, session.state
  per_epoch, total_steps, schedule = (session.steps_per_epoch, session.total_steps,
                                      session.schedule)
  replicated = parallel.replicated(mesh)
  x_train, y_train = data.splits["train"]
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), keep=tcfg.keep_checkpoints,
                            best_metric=tcfg.best_metric, best_mode=tcfg.best_mode)
  restored = checkpoints.restore(state)
  data_state = {"next_index": 0}
  if restored is not None:
    state, data_state, _, _ = restored
  start_step = int(state.step)

  if tcfg.get("on_device_data"):  # the whole split resident on the device(s)
    train_iter = DeviceBatches(x_train, y_train, batch_size=tcfg.batch_size, seed=config.seed,
                               mesh=mesh)
    to_device = lambda batch: batch  # noqa: E731  (already sharded)
  else:
    train_iter = iter(pipeline.train_batches(
        x_train, y_train, batch_size=tcfg.batch_size, seed=config.seed, num_steps=total_steps,
        process_index=jax.process_index(), process_count=jax.process_count()))
    to_device = lambda batch: parallel.shard_batch(batch, mesh)  # noqa: E731
  train_iter.set_state(data_state)

  batch_spec = parallel.batch_sharded(mesh)
  train_step = jax.jit(functools.partial(steps.train_step, task=session.task,
                                         augment=data_lib.augmenter(config, data.num_classes),
                                         normalize=data.normalizer()),
                       in_shardings=(replicated, batch_spec), out_shardings=replicated,
                       donate_argnums=0)
  validate = lambda st: session.evaluator(st, *data.splits["val"])[0]  # noqa: E731

  is_main = jax.process_index() == 0
  log = MetricsLog(workdir, start_step, enabled=is_main)
  progress = Progress(total_steps, start_step, enabled=tcfg.progress and is_main)
  meta = {"config": config_lib.to_dict(config), "steps_per_epoch": per_epoch}
  epoch_start = time.perf_counter()
  try:
    for step in range(start_step + 1, total_steps + 1):
      state = train_step(state, to_device(next(train_iter)))
      show = step % tcfg.log_every_steps == 0
      progress.update(step, tcfg.batch_size,
                      steps.summarize(state.totals) if show else None)
      if step % per_epoch == 0:
        epoch = step // per_epoch
        train_metrics = steps.summarize(state.totals)
        if not np.isfinite(train_metrics["loss"]):
          raise CnnJaxError(f"The training loss became {train_metrics['loss']} in epoch {epoch}. "
                            "Lower optimizer.learning_rate or add warmup; the last good "
                            "checkpoint is kept.")
        val_metrics = validate(state)
        row = {"epoch": epoch, "step": step,
               "train_loss": train_metrics["loss"], "train_accuracy": train_metrics["accuracy"],
               "val_loss": val_metrics["loss"], "val_accuracy": val_metrics["accuracy"],
               "learning_rate": float(schedule(step)),
               "epoch_time_s": round(time.perf_counter() - epoch_start, 3)}
        log.write(row)
        progress.write(f"epoch {epoch}/{tcfg.epochs}  train loss {row['train_loss']:.4f} "
                       f"acc {row['train_accuracy']:.4f}  val loss {row['val_loss']:.4f} "
                       f"acc {row['val_accuracy']:.4f}")
        state = state.replace(totals=jax.device_put(zero_totals(), replicated))
        checkpoints.save(step, state, train_iter.get_state(), {**meta, "epoch": epoch},
                         metrics={k: v for k, v in row.items() if k.startswith("val_")})
        epoch_start = time.perf_counter()
      elif tcfg.checkpoint_every_steps and step % tcfg.checkpoint_every_steps == 0:
        checkpoints.save(step, state, train_iter.get_state(), {**meta, "epoch": step // per_epoch})
    checkpoints.wait()
  finally:
    progress.close()
    log.close()
    checkpoints.close()

  test = evaluate_and_report(workdir, config, data, state, session.evaluator, "test",
                             int(state.step))
  diagnosis = diagnose(read_history(workdir), num_classes=data.num_classes)
  return {"val": validate(state), "test": test, "steps": int(state.step),
          "diagnosis": diagnosis}
