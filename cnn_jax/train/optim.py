"""Optimizers and learning-rate schedules from the config (optax)."""

import jax
import ml_collections
import optax

from cnn_jax.errors import ConfigError

SCHEDULES = ("constant", "cosine", "warmup_cosine", "step")
OPTIMIZERS = ("sgd", "adam", "adamw")


def make_schedule(s: ml_collections.ConfigDict, lr: float, steps_per_epoch: int,
                  total_steps: int) -> optax.Schedule:
  """The learning rate over steps: ``schedule.name`` in ``constant | cosine | warmup_cosine |
  step`` applied to the peak rate ``lr``.

  ``warmup_epochs`` applies to ``warmup_cosine``; ``step`` multiplies the rate by
  ``decay_factor`` at each epoch in ``decay_epochs``.
  """
  if s.name == "constant":
    return optax.constant_schedule(lr)
  if s.name == "cosine":
    return optax.cosine_decay_schedule(lr, max(total_steps, 1))
  if s.name == "warmup_cosine":
    warmup = int(s.warmup_epochs * steps_per_epoch)
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1))
  if s.name == "step":
    boundaries = {int(e * steps_per_epoch): s.decay_factor for e in s.decay_epochs}
    return optax.piecewise_constant_schedule(lr, boundaries)
  raise ConfigError(f"Unknown schedule.name {s.name!r}; choose one of {', '.join(SCHEDULES)}.")


def decay_mask(params) -> dict:
  """True for kernels (ndim > 1); False for biases and batch-norm scale/bias."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(o: ml_collections.ConfigDict,
                   schedule: optax.Schedule) -> optax.GradientTransformation:
  """An optimizer section's ``name`` in ``sgd | adam | adamw`` (``b1``/``b2`` optional for
  the Adam family, e.g. ``b1=0.5`` for GANs).

  ``weight_decay`` never touches biases or batch-norm parameters. For ``adamw`` it is
  decoupled (Loshchilov & Hutter); for ``sgd`` and ``adam`` it is added to the gradient
  (classic L2 regularization).
  """
  wd = o.get("weight_decay", 0.0)
  betas = {k: o[k] for k in ("b1", "b2") if o.get(k) is not None}
  if o.name == "sgd":
    base = optax.sgd(schedule, momentum=o.get("momentum") or None,
                     nesterov=o.get("nesterov", False))
  elif o.name == "adam":
    base = optax.adam(schedule, **betas)
  elif o.name == "adamw":
    return optax.adamw(schedule, weight_decay=wd, mask=decay_mask, **betas)
  else:
    raise ConfigError(f"Unknown optimizer.name {o.name!r}; choose one of {', '.join(OPTIMIZERS)}.")
  if wd:
    return optax.chain(optax.add_decayed_weights(wd, mask=decay_mask), base)
  return base
