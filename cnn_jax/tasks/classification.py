"""Multiclass classification: softmax outputs, cross-entropy with label smoothing."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from cnn_jax.tasks import TASKS, Task


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example loss ``[B]`` for logits ``[B, K]`` and int labels ``[B]`` or soft labels
  ``[B, K]`` (from mixup or cutmix)."""
  targets = labels if labels.ndim == 2 else jax.nn.one_hot(labels, logits.shape[-1])
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


@TASKS.register("classification")
def classification(section: ml_collections.ConfigDict, config: ml_collections.ConfigDict) -> Task:
  """``K`` logits, softmax cross-entropy (``train.label_smoothing``), argmax prediction."""
  del section
  return Task(
      name="classification", num_outputs=lambda k: k,
      loss=functools.partial(cross_entropy, label_smoothing=config.train.label_smoothing),
      eval_loss=cross_entropy, decide=lambda logits: logits,
      probabilities=lambda logits: jax.nn.softmax(logits, axis=-1))
