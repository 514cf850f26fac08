"""A run's session: data, task, mesh, initial state and evaluator, built from its config.

Shared by training (``cnn_jax.train.loop``) and the ``eval`` command
(``cnn_jax.evaluate.run``), so both see exactly the same data, networks and metrics.
"""

import dataclasses
import difflib
import os

import jax
import ml_collections
import numpy as np

from cnn_jax import config as config_lib
from cnn_jax import data as data_lib
from cnn_jax.data import pipeline
from cnn_jax.errors import CnnJaxError, ConfigError
from cnn_jax.tasks import Task, get_task
from cnn_jax.train import optim, parallel
from cnn_jax.train.checkpoint import Checkpoints
from cnn_jax.train.evaluator import Evaluator
from cnn_jax.train.state import TrainState, check_input_shape, create_train_state, zero_metrics
from cnn_jax.transfer import features  # noqa: F401  (registers feature_classification)
from cnn_jax.transfer import param_groups

# Metric names that get better as they fall (for ``train.best_mode="auto"``).
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "fid", "distance")


@dataclasses.dataclass
class Session:
  """Everything a run needs, built from its config.

  Attributes:
    primary: ``(metric, "max" | "min")``: the best checkpoint, the curve marker and the
      diagnosis all use it.
    metric_names: every name a history row can hold (``train_*`` and ``val_*``).
  """
  config: ml_collections.ConfigDict
  data: data_lib.PreparedData
  task: Task
  mesh: jax.sharding.Mesh
  state: TrainState
  evaluator: Evaluator
  schedule: object
  steps_per_epoch: int
  total_steps: int
  primary: tuple[str, str]
  metric_names: list[str]


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def train_batch_spec(arrays: dict[str, np.ndarray], batch_size: int) -> dict:
  """The abstract training batch: the split's arrays with images as float32."""
  spec = {k: jax.ShapeDtypeStruct((batch_size,) + v.shape[1:], v.dtype) for k, v in arrays.items()}
  spec["image"] = jax.ShapeDtypeStruct(spec["image"].shape, np.float32)
  return spec


def state_initializer(task: Task, networks: dict, seed: int, batch_spec: dict):
  """``(init, step_metrics)``: a function building the initial state (to jit with the
  state's sharding) whose ``totals`` match the metrics ``task.train_step`` returns on
  batches like ``batch_spec``, and those metrics' abstract shapes."""
  abstract = jax.eval_shape(lambda: create_train_state(networks, seed,
                                                       extra=task.initial_extra()))
  _, step_metrics = jax.eval_shape(task.train_step, abstract, batch_spec)
  return (lambda: create_train_state(networks, seed, zero_metrics(step_metrics),
                                     task.initial_extra())), step_metrics


# The initial state is computed once per run: on the CPU its program compiles without XLA's
# backend optimizations (CI U-Net 9.8 s -> 1.3 s, LeNet-5 3.3 s -> 0.6 s; its values then
# differ from an optimized compile's in the last bits, and are the same in every run).
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0,
                          "xla_llvm_disable_expensive_passes": True}


def jit_initializer(init, mesh: jax.sharding.Mesh):
  """``init`` (from :func:`state_initializer`) jitted to give a state replicated on ``mesh``."""
  options = _INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
  return jax.jit(init, out_shardings=parallel.replicated(mesh), compiler_options=options)


def setup(config: ml_collections.ConfigDict, workdir: str | None) -> Session:
  """Data, task, networks, mesh, initial state and evaluator for ``config``."""
  tcfg = config.train
  data = data_lib.prepare(config, workdir)
  task = get_task(config, data, load_run=load_run)
  data = task.select_data(data)
  mesh = parallel.make_mesh(tcfg.num_devices)
  parallel.check_batch_size(tcfg.batch_size, mesh)
  train_size = data.sizes()["train"]
  per_epoch = pipeline.steps_per_epoch(train_size, tcfg.batch_size)
  if per_epoch == 0:
    raise ConfigError(f"train.batch_size={tcfg.batch_size} exceeds the {train_size} training "
                      "examples; lower it.")
  total_steps = tcfg.get("max_steps") or per_epoch * tcfg.epochs  # max_steps: may end mid-epoch

  def make_optimizer(section: ml_collections.ConfigDict):
    def build(lr_multiplier: float = 1.0):
      schedule = optim.make_schedule(config.schedule, section.learning_rate * lr_multiplier,
                                     per_epoch, total_steps)
      return optim.make_optimizer(section, schedule)

    if section.get("param_groups"):  # frozen parts and learning-rate multipliers
      return param_groups.grouped_optimizer(section.param_groups, config.model.name, build)
    return build()

  networks = task.build_networks(make_optimizer)
  for name, net in networks.items():
    check_input_shape(net.module, net.input_shapes, f"{config.model.name} ({name})")
  init, step_metrics = state_initializer(
      task, networks, config.seed, train_batch_spec(data.splits["train"], tcfg.batch_size))
  state = jit_initializer(init, mesh)()
  eval_batch_size = _round_up(tcfg.eval_batch_size, mesh.size * jax.process_count())
  evaluator = Evaluator(task, mesh, eval_batch_size)
  val_metrics = task.summarize(evaluator.zero_sums(state, data.splits["val"]))
  names = [f"train_{k}" for k in step_metrics] + [f"val_{k}" for k in val_metrics]
  schedule = optim.make_schedule(config.schedule, config.optimizer.learning_rate, per_epoch,
                                 total_steps)
  return Session(config, data, task, mesh, state, evaluator, schedule, per_epoch, total_steps,
                 resolve_primary(config, task, names), names)


def resolve_primary(config: ml_collections.ConfigDict, task: Task,
                    names: list[str]) -> tuple[str, str]:
  """``(metric, mode)`` from ``train.best_metric``/``best_mode`` ("auto": the task's
  primary metric); a name the task does not produce is a ConfigError, raised before any
  training."""
  metric = config.train.get("best_metric", "auto") or "auto"
  mode = config.train.get("best_mode", "auto") or "auto"
  if metric == "auto":
    metric, task_mode = task.primary_metric
    mode = task_mode if mode == "auto" else mode
  if metric not in names:
    close = difflib.get_close_matches(metric, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"train.best_metric={metric!r} is not a metric of task {task.name!r}.{hint} "
                      f"Its metrics: {', '.join(names)}.")
  if mode == "auto":
    mode = "min" if any(w in metric for w in _LOWER_IS_BETTER) else "max"
  if mode not in ("min", "max"):
    raise ConfigError(f"train.best_mode must be 'min', 'max' or 'auto', got {mode!r}.")
  return metric, mode


def checkpoints_for(session: Session, workdir: str, read_only: bool = False) -> Checkpoints:
  """The run's checkpoints, kept (and "best" chosen) by the session's primary metric."""
  metric, mode = session.primary
  return Checkpoints(os.path.join(workdir, "checkpoints"),
                     keep=session.config.train.keep_checkpoints, best_metric=metric,
                     best_mode=mode, read_only=read_only)


def load_run(workdir: str, checkpoint: str = "best") -> tuple[Session, TrainState, int, int | None]:
  """A finished (or running) run: ``(session, state, step, best_step)`` restored from its
  ``checkpoint`` (``"best"``, ``"latest"`` or a step number). Tasks get it as
  ``task.load_run`` (e.g. a GAN's feature classifier is another run)."""
  config = config_lib.load_json(os.path.join(workdir, "config.json"))
  session = setup(config, workdir)
  checkpoints = checkpoints_for(session, workdir, read_only=True)
  try:
    steps = checkpoints.steps()
    if not steps:
      raise CnnJaxError(f"{workdir}/checkpoints holds no checkpoint; train first.")
    best = checkpoints.best_step()
    if checkpoint == "latest":
      step = steps[-1]
    elif checkpoint == "best":
      step = best if best is not None else steps[-1]
    else:
      try:
        step = int(checkpoint)
      except ValueError:
        raise CnnJaxError(f"--checkpoint must be best, latest or a step number, got "
                          f"{checkpoint!r}.") from None
    state, _, _, step = checkpoints.restore(session.state, step=step)
  finally:
    checkpoints.close()
  return session, state, step, best
