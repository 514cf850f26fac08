"""Optimizers and learning-rate schedules from the config (optax).

The peak learning rate and the weight decay are data, not constants: the optimizer keeps
them in its state (``optax.inject_hyperparams``), so two runs that differ only in these
values build the same computation and a process running both (a hyperparameter search)
can reuse the compiled train step.
"""

import dataclasses

import jax
import ml_collections
import optax

from cnn_jax.errors import ConfigError

SCHEDULES = ("constant", "cosine", "warmup_cosine", "step")
OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The learning rate at a step: ``peak * shape(step)``, where ``shape`` peaks at 1.

  The optimizer carries ``peak`` in its state and computes ``shape`` in the step."""
  shape: optax.Schedule
  peak: float

  def __call__(self, step):
    return self.peak * self.shape(step)


def make_schedule(s: ml_collections.ConfigDict, lr: float, steps_per_epoch: int,
                  total_steps: int) -> Schedule:
  """The learning rate over steps: ``schedule.name`` in ``constant | cosine | warmup_cosine |
  step`` applied to the peak rate ``lr``.

  ``warmup_epochs`` applies to ``warmup_cosine``; ``step`` multiplies the rate by
  ``decay_factor`` at each epoch in ``decay_epochs``. The cosine schedules reach zero at
  ``total_steps`` (``train.max_steps`` when a run sets it).
  """
  if s.name == "constant":
    shape = optax.constant_schedule(1.0)
  elif s.name == "cosine":
    shape = optax.cosine_decay_schedule(1.0, max(total_steps, 1))
  elif s.name == "warmup_cosine":
    warmup = int(s.warmup_epochs * steps_per_epoch)
    shape = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, max(total_steps, warmup + 1))
  elif s.name == "step":
    boundaries = {int(e * steps_per_epoch): s.decay_factor for e in s.decay_epochs}
    shape = optax.piecewise_constant_schedule(1.0, boundaries)
  else:
    raise ConfigError(f"Unknown schedule.name {s.name!r}; choose one of {', '.join(SCHEDULES)}.")
  return Schedule(shape, lr)


def decay_mask(params) -> dict:
  """True for kernels (ndim > 1); False for biases and batch-norm scale/bias."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(o: ml_collections.ConfigDict,
                   schedule: Schedule) -> optax.GradientTransformation:
  """An optimizer section's ``name`` in ``sgd | adam | adamw`` (``b1``/``b2`` optional for
  the Adam family, e.g. ``b1=0.5`` for GANs) following ``schedule``.

  ``weight_decay`` never touches biases or batch-norm parameters. For ``adamw`` it is
  decoupled (Loshchilov & Hutter); for ``sgd`` and ``adam`` it is added to the gradient
  (classic L2 regularization). The peak learning rate (``schedule.peak``) and the weight
  decay live in the optimizer state as ``opt_state.hyperparams["learning_rate"]`` and
  ``["weight_decay"]``; ``["lr_factor"]`` is the schedule's shape at the current step.
  """
  if o.name not in OPTIMIZERS:
    raise ConfigError(f"Unknown optimizer.name {o.name!r}; choose one of {', '.join(OPTIMIZERS)}.")
  betas = {k: o[k] for k in ("b1", "b2") if o.get(k) is not None}

  def build(learning_rate, weight_decay, lr_factor) -> optax.GradientTransformation:
    rate = learning_rate * lr_factor
    if o.name == "adamw":
      return optax.adamw(rate, weight_decay=weight_decay, mask=decay_mask, **betas)
    if o.name == "sgd":
      base = optax.sgd(rate, momentum=o.get("momentum") or None,
                       nesterov=o.get("nesterov", False))
    else:
      base = optax.adam(rate, **betas)
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask), base)

  return optax.inject_hyperparams(build)(learning_rate=schedule.peak,
                                         weight_decay=o.get("weight_decay", 0.0),
                                         lr_factor=schedule.shape)
