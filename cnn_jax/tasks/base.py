"""The task interface: what a task adds to the one training loop.

Two levels, as in Keras' ``fit`` with an overridable ``train_step``:

* :class:`Task` — the full interface. A task names its inputs, builds its networks,
  provides a jittable ``train_step`` and ``eval_step``, turns summed evaluation statistics
  into metrics, evaluates whole splits (host-side work such as ROC curves), draws its
  figures and names its primary metric. GAN-like tasks implement ``train_step`` themselves.
* :class:`SupervisedTask` — one network ``"net"`` trained by gradient descent on a loss;
  a subclass only writes ``loss`` (and, for its own evaluation, ``eval_step``).

The loop (``cnn_jax.train.loop``) owns everything else: steps, data order, RNG, sharding,
checkpoints, logs, progress and the NaN guard. It sums whatever ``(sum, count)`` pairs the
steps return and logs them as ``train_<name>`` and ``val_<name>``.
"""

import difflib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax.errors import CnnJaxError, ConfigError
from cnn_jax.registry import Registry
from cnn_jax.train.state import Metrics, Network, TrainState
from cnn_jax.transfer import param_groups

TASKS = Registry("task")

# Streams folded into a step's key (``state.step_key()``).
DROPOUT_STREAM, AUGMENT_STREAM, NOISE_STREAM = 0, 1, 2


def masked_sum(values: jax.Array, valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """``(sum, count)`` of per-example ``values [B]`` over the rows where ``valid [B]`` is set."""
  values = values.astype(jnp.float32)
  if valid is None:
    return jnp.sum(values), jnp.asarray(values.shape[0], jnp.float32)
  weight = valid.astype(jnp.float32)
  return jnp.sum(jnp.where(valid, values, 0.0)), jnp.sum(weight)


def means(sums: Metrics) -> dict[str, float]:
  """``{name: sum / count}`` as Python floats (0 for an empty count), ``loss`` first."""
  order = sorted(sums, key=lambda k: (k != "loss", not k.endswith("loss")))
  return {k: float(sums[k][0]) / max(float(sums[k][1]), 1.0) for k in order}


class Task:
  """Base class of every task; see the module docstring.

  Class attributes:
    name: the registered name (``config.task.name``).
    inputs: batch keys the data must provide, each with its kind for augmentation
      (``"image"``, ``"label"``, ``"mask"``, ``"boxes"``, ``"box_valid"``, ``"other"``).
    options: the ``config.task`` keys this task reads, with their defaults.
    primary_metric: ``(name, "max" | "min")`` used for the best checkpoint, the learning
      curve marker and the diagnosis unless ``train.best_metric`` names another one.
    accuracy_metric: the accuracy-like metric (logged as ``train_<name>`` and
      ``val_<name>``) whose train-validation gap the over/underfitting diagnosis judges;
      ``None`` where the task has none (the diagnosis then judges the losses only); see
      also :meth:`chance_accuracy`.
  """
  name = ""
  inputs: dict[str, str] = {"image": "image"}
  options: dict[str, Any] = {}
  primary_metric: tuple[str, str] = ("val_loss", "min")
  accuracy_metric: str | None = None

  def __init__(self, config: ml_collections.ConfigDict, data, load_run: Callable | None = None):
    """``data``: the run's ``PreparedData`` (class names, image shape, normalization);
    ``load_run(workdir, checkpoint="best") -> (session, state, step, best_step)`` restores
    another run (e.g. the classifier that scores a generator)."""
    self.config = config
    self.load_run = load_run
    self.opts = _task_options(config, self.name, self.options)
    self.class_names = list(data.class_names)
    self.image_shape = data.image_shape
    self.normalize = data.normalizer()
    self.augment = data.augmenter(config, self.inputs)

  # ---- data and networks ----
  def select_data(self, data):
    """Optionally changes the prepared splits (e.g. keeps only normal classes for training
    an anomaly detector); returns the data to train and evaluate on."""
    return data

  def build_networks(self, make_optimizer: Callable) -> dict[str, Network]:
    """``{name: Network}``; ``make_optimizer(section)`` builds an optax optimizer from an
    ``optimizer`` config section with the run's learning-rate schedule."""
    raise NotImplementedError

  def initial_extra(self) -> Any:
    """Task-owned state carried in ``TrainState.extra`` and checkpointed with it (e.g. an
    image history buffer): a pytree of arrays; ``{}`` when the task needs none."""
    return {}

  # ---- steps (jitted by the loop) ----
  def train_step(self, state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
    """One training step on a sharded batch; returns the new state (without the step
    increment, which the loop does) and this batch's ``(sum, count)`` metrics."""
    raise NotImplementedError

  def eval_step(self, state: TrainState, batch: dict) -> tuple[Any, dict]:
    """Statistics of one padded eval batch (``batch["valid"] [B]`` marks real rows,
    ``batch["index"] [B]`` is each row's position in the split): ``(sums, outputs)``;
    ``sums`` is a pytree the evaluator adds up over the split, ``outputs`` per-example
    arrays ``[B, ...]`` for host-side metrics and figures (may be empty)."""
    raise NotImplementedError

  def summarize(self, sums) -> dict[str, float]:
    """Scalar metrics from the summed eval statistics (logged as ``val_<name>``)."""
    return means(sums)

  def progress_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
    """What the progress bar shows of the running training metrics."""
    return dict(list(metrics.items())[:3])

  # ---- whole-split evaluation (host) ----
  def evaluate(self, evaluator, state: TrainState, data, split: str) -> tuple[dict, dict]:
    """Metrics of ``split`` (JSON-ready) and the collected per-example outputs."""
    sums, outputs = evaluator.run(state, data.splits[split], with_outputs=True)
    return self.summarize(sums), outputs

  def figures(self, state: TrainState, data, split: str, results: dict, outputs: dict,
              out_dir: str) -> dict[str, str]:
    """Writes the task's figures for ``split`` into ``out_dir``; returns ``{name: path}``."""
    return {}

  def describe_results(self, results: dict) -> str:
    """One line for the command line after training or evaluation."""
    shown = [(k, v) for k, v in results.items() if isinstance(v, (int, float))][:4]
    return "  ".join(f"{k} {v:.4f}" for k, v in shown)

  def predict_image(self, state: TrainState, image: np.ndarray, out_path: str) -> str:
    """Draws the prediction for one image ``[H, W, C]`` (in [0, 1], at the run's input size)
    into the PNG ``out_path`` and returns it (``python -m cnn_jax predict``)."""
    raise CnnJaxError(f"task {self.name!r} cannot draw predictions; predict works for "
                      "segmentation and detection runs.")

  def chance_accuracy(self, data) -> float | None:
    """The ``accuracy_metric`` a constant prediction scores on ``data``'s training split (the
    diagnosis' "not learning at all" level); ``None`` where there is none."""
    return None


class SupervisedTask(Task):
  """One network ``"net"`` trained on ``loss``; the default steps do the rest.

  Subclasses implement :meth:`build_model` and :meth:`loss` (and usually ``eval_step``).
  """

  def build_model(self):
    """The network, e.g. from ``config.model`` (see ``cnn_jax.models.create``)."""
    raise NotImplementedError

  def build_networks(self, make_optimizer: Callable) -> dict[str, Network]:
    return {"net": Network(self.build_model(), (self.image_shape,),
                           make_optimizer(self.config.optimizer))}

  def prepare_batch(self, key: jax.Array, batch: dict, train: bool) -> dict:
    """Augmentation (training only) then normalization of ``batch["image"]``; the model's
    input is ``batch["input"]``."""
    if train and self.augment is not None:
      batch = self.augment(jax.random.fold_in(key, AUGMENT_STREAM), batch)
    image = batch["image"]
    return {**batch, "input": image if self.normalize is None else self.normalize(image)}

  def loss(self, outputs, batch: dict, train: bool) -> tuple[jax.Array, Metrics]:
    """Per-example loss ``[B]`` and further ``(sum, count)`` metrics of the batch."""
    raise NotImplementedError

  def train_step(self, state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
    """One gradient step; with ``optimizer.param_groups`` freezing parts of the network only
    the trainable parameters are differentiated and frozen batch norms run in inference mode
    (:mod:`cnn_jax.transfer.param_groups`)."""
    key = state.step_key()
    batch = self.prepare_batch(key, batch, train=True)
    net = state.nets["net"]
    frozen = param_groups.frozen_paths(net.params, self.config.optimizer.get("param_groups"),
                                       self.config.model.name)
    trainable, fixed = param_groups.split(net.params, frozen)

    def loss_fn(trainable):
      params = param_groups.merge(trainable, fixed)
      with param_groups.frozen_batch_norm(frozen):
        outputs, collections = net.apply(batch["input"], params=params, train=True,
                                         rng=jax.random.fold_in(key, DROPOUT_STREAM))
      loss, metrics = self.loss(outputs, batch, train=True)
      return loss.mean(), (loss, metrics, collections)

    grads, (loss, metrics, collections) = jax.grad(loss_fn, has_aux=True)(trainable)
    grads = param_groups.full_gradients(grads, fixed)
    state = state.replace(nets={**state.nets, "net": net.apply_gradients(grads, collections)})
    return state, {"loss": masked_sum(loss), **metrics}

  def predict(self, state: TrainState, batch: dict):
    """Inference-mode outputs of the network for a (normalized) batch."""
    outputs, _ = state.nets["net"].apply(batch["input"], train=False)
    return outputs


def _task_options(config: ml_collections.ConfigDict, name: str, defaults: dict) -> dict:
  """``config.task`` (without ``name``) merged over ``defaults``; unknown keys raise."""
  section = dict(config.get("task") or {})
  section.pop("name", None)
  for key in section:
    if key not in defaults:
      close = difflib.get_close_matches(key, defaults, n=3, cutoff=0.6)
      hint = f" Did you mean {', '.join('task.' + c for c in close)}?" if close else ""
      known = ", ".join(defaults) or "none"
      raise ConfigError(f"Task {name!r} has no option task.{key}.{hint} Its options: {known}.")
  return {**defaults, **section}
