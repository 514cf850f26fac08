"""Binary classification: one sigmoid output, binary cross-entropy, a decision threshold.

The dataset has two classes; class 1 is the positive one. ``task.threshold`` is the
probability at or above which an example is predicted positive.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from cnn_jax.errors import ConfigError
from cnn_jax.tasks import TASKS, Task


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example loss ``[B]`` for one logit per example (``[B, 1]`` or ``[B]``) and labels
  ``[B]`` in {0, 1}, or soft two-class labels ``[B, 2]`` (mixup, cutmix)."""
  positive = labels[:, 1] if labels.ndim == 2 else labels
  return optax.sigmoid_binary_cross_entropy(logits.reshape(-1).astype(jnp.float32),
                                            positive.astype(jnp.float32))


@TASKS.register("binary")
def binary(section: ml_collections.ConfigDict, config: ml_collections.ConfigDict) -> Task:
  threshold = float(section.get("threshold", 0.5))
  if not 0.0 < threshold < 1.0:
    raise ConfigError(f"task.threshold must be in (0, 1), got {threshold}.")

  def num_outputs(num_classes: int) -> int:
    if num_classes != 2:
      raise ConfigError(f"task.name='binary' needs a dataset with 2 classes, this one has "
                        f"{num_classes}; use task.name='classification'.")
    return 1

  def probabilities(logits: jax.Array) -> jax.Array:
    p = jax.nn.sigmoid(logits.reshape(-1).astype(jnp.float32))
    return jnp.stack([1.0 - p, p], axis=-1)

  def decide(logits: jax.Array) -> jax.Array:
    positive = (probabilities(logits)[:, 1] >= threshold).astype(jnp.float32)
    return jnp.stack([1.0 - positive, positive], axis=-1)

  return Task(name="binary", num_outputs=num_outputs, loss=binary_cross_entropy,
              eval_loss=binary_cross_entropy, decide=decide, probabilities=probabilities,
              threshold=threshold)
