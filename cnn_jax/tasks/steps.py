"""Train and eval step functions shared by every task (jitted by the loop)."""

import jax
import jax.numpy as jnp

from cnn_jax.metrics import classification as metrics
from cnn_jax.tasks import Task
from cnn_jax.train.state import TrainState


def train_step(state: TrainState, batch: dict, task: Task, augment=None,
               normalize=None) -> TrainState:
  """One optimizer step on ``batch = {"image": [B,H,W,C] in [0, 1], "label": [B]}``.

  Args:
    augment: optional ``(key, images, labels [B]) -> (images, targets)`` run on the device;
      targets are int labels ``[B]`` or soft labels ``[B, K]`` (mixup, cutmix).
    normalize: optional ``images -> images`` applied after augmentation.

  Adds the batch's summed loss, correct count and size to ``state.totals``.
  """
  step_rng = jax.random.fold_in(state.rng, state.step)
  images, targets = batch["image"], batch["label"]
  if augment is not None:
    images, targets = augment(jax.random.fold_in(step_rng, 1), images, targets)
  if normalize is not None:
    images = normalize(images)

  def loss_fn(params):
    (outputs, _), updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, images, train=True,
        rngs={"dropout": jax.random.fold_in(step_rng, 0)}, mutable=["batch_stats"])
    loss = task.loss(outputs, targets)
    return loss.mean(), (loss, outputs, updates)

  grads, (loss, outputs, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", {}))
  correct = jnp.sum(jnp.argmax(task.decide(outputs), -1) == batch["label"])
  totals = {"loss": state.totals["loss"] + loss.sum(),
            "correct": state.totals["correct"] + correct,
            "count": state.totals["count"] + loss.shape[0]}
  return state.replace(totals=totals)


def predict(state: TrainState, images: jax.Array) -> jax.Array:
  """Inference-mode model outputs ``[B, O]`` for images ``[B, H, W, C]``."""
  outputs, _ = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                              images, train=False)
  return outputs


def eval_step(state: TrainState, stats: metrics.ClassificationStats, batch: dict,
              task: Task, normalize=None) -> tuple[metrics.ClassificationStats, jax.Array]:
  """Adds ``batch = {"image", "label", "mask"}`` to ``stats``; also returns the class
  probabilities ``[B, K]`` (for ROC curves and example grids)."""
  images = batch["image"] if normalize is None else normalize(batch["image"])
  outputs = predict(state, images)
  loss = task.eval_loss(outputs, batch["label"])
  stats = metrics.update(stats, task.decide(outputs), batch["label"], batch["mask"], loss)
  return stats, task.probabilities(outputs)


def summarize(totals: dict) -> dict[str, float]:
  """``{"loss", "accuracy"}`` from the train step's summed ``totals``."""
  count = max(float(totals["count"]), 1.0)
  return {"loss": float(totals["loss"]) / count, "accuracy": float(totals["correct"]) / count}
