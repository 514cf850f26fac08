"""Classification: multiclass (softmax, cross-entropy) and binary (one sigmoid output).

Both train one network on ``{"image", "label"}`` batches and evaluate with a summed
:class:`~cnn_jax.metrics.classification.ClassificationStats` (confusion matrix, loss,
top-k) plus host-side ROC/PR curves from the collected class probabilities.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_jax import models
from cnn_jax.errors import ConfigError
from cnn_jax.metrics import classification as metrics_lib
from cnn_jax.tasks.base import TASKS, SupervisedTask, masked_sum
from cnn_jax.transfer.init_from import model_options


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example loss ``[B]`` for logits ``[B, K]`` and int labels ``[B]`` or soft labels
  ``[B, K]`` (from mixup or cutmix)."""
  targets = labels if labels.ndim == 2 else jax.nn.one_hot(labels, logits.shape[-1])
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example loss ``[B]`` for one logit per example (``[B, 1]`` or ``[B]``) and labels
  ``[B]`` in {0, 1}, or soft two-class labels ``[B, 2]`` (mixup, cutmix)."""
  positive = labels[:, 1] if labels.ndim == 2 else labels
  return optax.sigmoid_binary_cross_entropy(logits.reshape(-1).astype(jnp.float32),
                                            positive.astype(jnp.float32))


def build_model(config, **fixed):
  """``config.model.name`` with every other ``config.model`` key (but ``init_from`` and its
  options, see :mod:`cnn_jax.transfer.init_from`) as a constructor option, plus ``fixed``
  options the task decides (e.g. ``num_classes``)."""
  options = model_options(config.model)
  if "dtype" in options:
    options["dtype"] = jnp.dtype(options["dtype"])
  return models.create(config.model.name, **options, **fixed)


@TASKS.register("classification")
class ClassificationTask(SupervisedTask):
  """``K`` logits, softmax cross-entropy (``train.label_smoothing``), argmax prediction.

  ``task.flip_average``: evaluation scores the mean of the logits of each image and of its
  mirror image (test-time flip augmentation; training is unchanged).
  """
  name = "classification"
  inputs = {"image": "image", "label": "label"}
  options = {"flip_average": False}
  primary_metric = ("val_accuracy", "max")
  accuracy_metric = "accuracy"

  def num_outputs(self) -> int:
    return len(self.class_names)

  def chance_accuracy(self, data) -> float:
    """``1 / K``: guessing among the K classes."""
    return 1.0 / len(self.class_names)

  def build_model(self):
    return build_model(self.config, num_classes=self.num_outputs())

  def train_loss(self, logits, labels):
    return cross_entropy(logits, labels, self.config.train.label_smoothing)

  def eval_loss(self, logits, labels):
    return cross_entropy(logits, labels)

  def decide(self, logits) -> jax.Array:
    """Decision scores ``[B, K]`` whose argmax is the predicted class."""
    return logits

  def probabilities(self, logits) -> jax.Array:
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

  def loss(self, outputs, batch, train):
    logits, _ = outputs
    loss = self.train_loss(logits, batch["label"])
    hard = batch["label"] if batch["label"].ndim == 1 else jnp.argmax(batch["label"], -1)
    correct = (jnp.argmax(self.decide(logits), -1) == hard).astype(jnp.float32)
    return loss, {"accuracy": masked_sum(correct)}

  def eval_step(self, state, batch):
    batch = self.prepare_batch(None, batch, train=False)
    logits, _ = self.predict(state, batch)
    if self.opts.get("flip_average"):
      mirrored, _ = self.predict(state, {**batch, "input": batch["input"][:, :, ::-1]})
      logits = (logits + mirrored) / 2
    stats = metrics_lib.update(metrics_lib.ClassificationStats.empty(len(self.class_names)),
                               self.decide(logits), batch["label"], batch["valid"],
                               self.eval_loss(logits, batch["label"]))
    return stats, {"probabilities": self.probabilities(logits)}

  def summarize(self, stats) -> dict[str, float]:
    """Loss, accuracy, top-k accuracy and macro precision, recall and F1 (the full set,
    per class and micro/weighted too, is in the final evaluation)."""
    results = metrics_lib.compute(stats)
    return {k: v for k, v in results.items()
            if k in ("loss", "accuracy") or k.endswith(("_macro", "_accuracy"))
            and not k.startswith("specificity")}

  def evaluate(self, evaluator, state, data, split):
    stats, outputs = evaluator.run(state, data.splits[split], with_outputs=True)
    results = metrics_lib.compute(stats)
    labels = data.splits[split]["label"]
    results.update(self.curve_metrics(outputs["probabilities"], labels))
    return results, outputs

  def curve_metrics(self, probs: np.ndarray, labels: np.ndarray) -> dict:
    curves = metrics_lib.one_vs_rest_curves(probs, labels, self.class_names)
    return {"macro_auc": curves["macro_auc"],
            "macro_average_precision": curves["macro_average_precision"], "curves": curves}

  def figures(self, state, data, split, results, outputs, out_dir):
    from cnn_jax.data import display_name
    from cnn_jax.figures import classification as plots
    os.makedirs(out_dir, exist_ok=True)
    path = lambda name: os.path.join(out_dir, f"{split}_{name}.png")  # noqa: E731
    names = self.class_names
    dataset = f"{display_name(self.config.dataset)}, {split}"
    probs, labels = outputs["probabilities"], data.splits[split]["label"]
    curves, point = results["curves"], results.get("at_threshold")
    return {
        "confusion_matrix": plots.plot_confusion_matrix(
            results["confusion_matrix"], path("confusion_matrix"), class_names=names,
            dataset=dataset),
        "per_class": plots.plot_per_class(results["per_class"], path("per_class"),
                                          class_names=names, dataset=dataset),
        "roc": plots.plot_roc(curves, path("roc"), dataset=dataset, operating_point=point),
        "pr": plots.plot_pr(curves, path("pr"), dataset=dataset, operating_point=point),
        "misclassified": plots.plot_misclassified(
            data.splits[split]["image"], labels, probs.argmax(-1), path("misclassified"),
            class_names=names, probabilities=probs, dataset=dataset),
    }

  def describe_results(self, results):
    return f"loss {results['loss']:.4f}  accuracy {results['accuracy']:.4f}"


@TASKS.register("binary")
class BinaryTask(ClassificationTask):
  """One sigmoid output, binary cross-entropy; class 1 is the positive one and
  ``task.threshold`` the probability at or above which an example is predicted positive."""
  name = "binary"
  options = {**ClassificationTask.options, "threshold": 0.5}

  def __init__(self, config, data, **kwargs):
    super().__init__(config, data, **kwargs)
    self.threshold = float(self.opts["threshold"])
    if not 0.0 < self.threshold < 1.0:
      raise ConfigError(f"task.threshold must be in (0, 1), got {self.threshold}.")
    if len(self.class_names) != 2:
      raise ConfigError(f"task.name='binary' needs a dataset with 2 classes, this one has "
                        f"{len(self.class_names)}; use task.name='classification'.")

  def num_outputs(self) -> int:
    return 1

  def train_loss(self, logits, labels):
    return binary_cross_entropy(logits, labels)

  eval_loss = train_loss

  def probabilities(self, logits):
    p = jax.nn.sigmoid(logits.reshape(-1).astype(jnp.float32))
    return jnp.stack([1.0 - p, p], axis=-1)

  def decide(self, logits):
    positive = (self.probabilities(logits)[:, 1] >= self.threshold).astype(jnp.float32)
    return jnp.stack([1.0 - positive, positive], axis=-1)

  def curve_metrics(self, probs, labels):
    curves = metrics_lib.binary_curves(probs[:, 1], labels)
    at = metrics_lib.binary_metrics_at_threshold(probs[:, 1], labels, self.threshold)
    return {"auc": curves["auc"], "average_precision": curves["average_precision"],
            "best_f1": curves["best_f1"], "at_threshold": at, "curves": curves}
