"""Multiclass classification: softmax cross-entropy with label smoothing.

Step functions are pure; the train loop jits them with shardings and donation.
"""

import jax
import jax.numpy as jnp
import optax

from cnn_jax.evaluate import metrics
from cnn_jax.train.state import TrainState


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example loss ``[B]`` for logits ``[B, K]`` and int labels ``[B]``."""
  num_classes = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing) \
      if label_smoothing else jax.nn.one_hot(labels, num_classes)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def train_step(state: TrainState, batch: dict, label_smoothing: float = 0.0) -> TrainState:
  """One optimizer step on ``batch = {"image": [B,H,W,C], "label": [B]}``.

  Adds the batch's summed loss, correct count and size to ``state.totals``.
  """
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    (logits, _), updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
        rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    loss = cross_entropy(logits, batch["label"], label_smoothing)
    return loss.mean(), (loss, logits, updates)

  grads, (loss, logits, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", {}))
  correct = jnp.sum(jnp.argmax(logits, -1) == batch["label"])
  totals = {"loss": state.totals["loss"] + loss.sum(),
            "correct": state.totals["correct"] + correct,
            "count": state.totals["count"] + loss.shape[0]}
  return state.replace(totals=totals)


def predict(state: TrainState, images: jax.Array) -> jax.Array:
  """Inference-mode logits ``[B, K]`` for images ``[B, H, W, C]``."""
  logits, _ = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                             images, train=False)
  return logits


def eval_step(state: TrainState, stats: metrics.ClassificationStats,
              batch: dict) -> tuple[metrics.ClassificationStats, jax.Array]:
  """Adds ``batch = {"image", "label", "mask"}`` to ``stats``; also returns the class
  probabilities ``[B, K]`` (for ROC curves and example grids)."""
  logits = predict(state, batch["image"])
  loss = cross_entropy(logits, batch["label"])
  stats = metrics.update(stats, logits, batch["label"], batch["mask"], loss)
  return stats, jax.nn.softmax(logits, axis=-1)


def summarize(totals: dict) -> dict[str, float]:
  """``{"loss", "accuracy"}`` from the train step's summed ``totals``."""
  count = max(float(totals["count"]), 1.0)
  return {"loss": float(totals["loss"]) / count, "accuracy": float(totals["correct"]) / count}
