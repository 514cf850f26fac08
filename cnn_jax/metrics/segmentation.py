"""Semantic segmentation metrics and losses, in JAX.

Metrics come from one summed per-pixel confusion matrix (a :class:`SegmentationStats`
pytree), accumulated by a pure, jittable :func:`update` and finished on the host by
:func:`compute`::

  stats = SegmentationStats.empty(num_classes=5)
  for batch in eval_batches:                   # update usually lives in a jitted step
    stats = update(stats, logits, batch["mask"], valid, loss_per_example, ignore_label=255)
  results = compute(stats)                     # pixel accuracy, IoU, Dice, ...

``valid`` (``[B]`` bool) marks the real examples of a padded batch; pixels whose label is
``ignore_label`` (e.g. VOC's 255 object borders) count nowhere.

Definitions (``tp``, ``fp``, ``fn`` per class, summed over all pixels; Long et al. 2015,
"Fully Convolutional Networks for Semantic Segmentation", section 5):

* pixel accuracy: correct pixels / labelled pixels.
* IoU (Jaccard) of class ``c``: ``tp / (tp + fp + fn)``; NaN for a class that neither
  occurs nor is predicted. Mean IoU averages the other classes, as
  ``sklearn.metrics.jaccard_score(average="macro")`` does over the labels present.
* Dice = F1 of class ``c``: ``2 tp / (2 tp + fp + fn)``; NaN and averaged the same way.
* mean accuracy: the mean recall over the classes that occur; frequency-weighted IoU:
  IoU weighted by each class's share of the labelled pixels.

Losses return one value per example (``[B]``), ready for the task's masked mean:
:func:`pixel_cross_entropy` (class weights, ignore label), :func:`soft_dice_loss`
(Milletari et al. 2016, "V-Net") and :func:`cross_entropy_dice_loss`, their weighted sum.

Counts are int32: one confusion cell holds at most 2^31 - 1 pixels (for example 8,000
images of 512 x 512), per evaluation.
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_jax.errors import DataError, ShapeError
from cnn_jax.metrics.classification import count_metrics


@flax.struct.dataclass
class SegmentationStats:
  """Sums over the pixels and examples seen so far (a pytree: pass it through ``jit``).

  Attributes:
    loss_sum: float32 ``[]``, the summed per-example loss of the valid examples.
    count: int32 ``[]``, the number of valid examples.
    pixel_count: int32 ``[]``, the labelled (not ignored) pixels of the valid examples.
    confusion: int32 ``[K, K]``; ``confusion[t, p]`` counts pixels of true class ``t``
      predicted as ``p`` (rows true, as in scikit-learn).
  """
  loss_sum: jax.Array
  count: jax.Array
  pixel_count: jax.Array
  confusion: jax.Array

  @classmethod
  def empty(cls, num_classes: int) -> "SegmentationStats":
    """Zero stats for ``num_classes`` classes (background included)."""
    if num_classes < 2:
      raise DataError(f"segmentation needs at least 2 classes (background and one object "
                      f"class), got num_classes={num_classes}.")
    return cls(loss_sum=jnp.zeros((), jnp.float32), count=jnp.zeros((), jnp.int32),
               pixel_count=jnp.zeros((), jnp.int32),
               confusion=jnp.zeros((num_classes, num_classes), jnp.int32))

  @property
  def num_classes(self) -> int:
    return self.confusion.shape[0]


def _labelled_pixels(labels: jax.Array, valid: jax.Array, ignore_label: int | None) -> jax.Array:
  """bool ``[B, H, W]``: pixels of valid examples whose label is not ``ignore_label``."""
  keep = jnp.broadcast_to(jnp.asarray(valid)[:, None, None] > 0, labels.shape)
  return keep if ignore_label is None else keep & (labels != ignore_label)


def update(stats: SegmentationStats, logits: jax.Array, labels: jax.Array, valid: jax.Array,
           loss_per_example: jax.Array, ignore_label: int | None = None) -> SegmentationStats:
  """Adds one batch to ``stats``; pure and jittable.

  Args:
    stats: the running sums.
    logits: ``[B, H, W, K]`` scores (the prediction is their ``argmax``), or int
      ``[B, H, W]`` predicted classes.
    labels: int ``[B, H, W]`` true classes in ``[0, K)`` or ``ignore_label``; other values
      make :func:`compute` raise.
    valid: ``[B]`` bool or 0/1; examples with ``valid <= 0`` (padding) are skipped.
    loss_per_example: ``[B]`` loss of each example.
    ignore_label: label of pixels to leave out (None: none).
  """
  k = stats.num_classes
  labels = jnp.asarray(labels)
  predictions = logits if jnp.ndim(logits) == labels.ndim else jnp.argmax(logits, axis=-1)
  batch = labels.shape[0]
  if (labels.ndim != 3 or predictions.shape != labels.shape or jnp.shape(valid) != (batch,)
      or jnp.shape(loss_per_example) != (batch,)
      or (jnp.ndim(logits) == 4 and jnp.shape(logits)[-1] != k)):
    raise ShapeError(
        f"segmentation update expects logits [B, H, W, {k}] (or predictions [B, H, W]), "
        f"labels [B, H, W], valid [B] and loss [B]; got logits {list(jnp.shape(logits))}, "
        f"labels {list(labels.shape)}, valid {list(jnp.shape(valid))}, loss "
        f"{list(jnp.shape(loss_per_example))}. Crop the labels to the logits for models "
        "with valid padding.")
  counted = _labelled_pixels(labels, valid, ignore_label)
  in_range = counted & (labels >= 0) & (labels < k)
  # Uncounted and out-of-range pixels go to cell K * K, which the scatter drops; compute()
  # then sees fewer confusion entries than labelled pixels and reports the bad labels.
  cell = jnp.where(in_range, labels * k + predictions, k * k).astype(jnp.int32).reshape(-1)
  confusion = stats.confusion.reshape(-1).at[cell].add(1, mode="drop").reshape(k, k)
  example = jnp.asarray(valid) > 0
  return stats.replace(
      loss_sum=stats.loss_sum + jnp.sum(jnp.where(example, loss_per_example, 0.0)),
      count=stats.count + jnp.sum(example, dtype=jnp.int32),
      pixel_count=stats.pixel_count + jnp.sum(counted, dtype=jnp.int32),
      confusion=confusion)


def merge(a: SegmentationStats, b: SegmentationStats) -> SegmentationStats:
  """Sums two stats over the same classes (e.g. from two hosts)."""
  if a.confusion.shape != b.confusion.shape:
    raise ShapeError(f"cannot merge stats for {a.num_classes} classes with stats for "
                     f"{b.num_classes} classes.")
  return jax.tree.map(jnp.add, a, b)


def confusion_metrics(confusion) -> dict:
  """Pixel accuracy, IoU, Dice and more from a ``[K, K]`` confusion matrix (rows true).

  Returns plain Python values: ``pixel_accuracy``, ``mean_accuracy``, ``mean_iou``,
  ``frequency_weighted_iou``, ``mean_dice``, ``num_classes_present`` and ``per_class``
  (``K``-long lists ``iou``, ``dice``, ``precision``, ``recall``, ``support`` in pixels,
  with NaN IoU and Dice for the classes that neither occur nor are predicted).
  """
  cm = np.asarray(confusion, np.int64)
  total = cm.sum()
  tp = np.diag(cm)
  support, predicted = cm.sum(axis=1), cm.sum(axis=0)
  fp, fn = predicted - tp, support - tp
  present = tp + fp + fn > 0
  union = np.where(present, tp + fp + fn, 1)
  iou = np.where(present, tp / union, np.nan)
  rates = count_metrics(tp, fp, total - tp - fp - fn, fn)
  dice = np.where(present, rates["f1"], np.nan)

  def mean(values, where):
    return float(values[where].mean()) if where.any() else 0.0

  return {
      "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
      "mean_accuracy": mean(rates["recall"], support > 0),
      "mean_iou": mean(iou, present),
      "frequency_weighted_iou": float((support[present] * iou[present]).sum() / total)
                                if total else 0.0,
      "mean_dice": mean(dice, present),
      "num_classes_present": int(present.sum()),
      "per_class": {"iou": iou.tolist(), "dice": dice.tolist(),
                    "precision": rates["precision"].tolist(),
                    "recall": rates["recall"].tolist(), "support": support.tolist()},
  }


def compute(stats: SegmentationStats) -> dict:
  """Final metrics: ``count``, ``loss`` (mean per example), ``confusion_matrix`` and the
  entries of :func:`confusion_metrics`, as plain Python values.

  Raises:
    DataError: when some labelled pixels had a class outside ``[0, K)``.
  """
  cm = np.asarray(jax.device_get(stats.confusion), np.int64)
  pixels, count = int(stats.pixel_count), int(stats.count)
  if cm.sum() != pixels:
    raise DataError(
        f"{pixels - cm.sum()} of {pixels} labelled pixels had a class outside [0, {len(cm)}): "
        "check that the masks' classes match the model's num_classes, or set the ignore "
        "label of the pixels to skip.")
  return {"count": count, "loss": float(stats.loss_sum) / count if count else 0.0,
          **confusion_metrics(cm), "confusion_matrix": cm.tolist()}


def _check_loss_inputs(logits: jax.Array, labels: jax.Array) -> None:
  if logits.ndim != 4 or labels.shape != logits.shape[:3]:
    raise ShapeError(f"segmentation losses expect logits [B, H, W, K] and labels [B, H, W], "
                     f"got {list(logits.shape)} and {list(labels.shape)}. Crop the labels to "
                     "the logits for models with valid padding.")


def pixel_cross_entropy(logits: jax.Array, labels: jax.Array, class_weights=None,
                        ignore_label: int | None = None) -> jax.Array:
  """Per-example mean of the per-pixel softmax cross-entropy: ``[B, H, W, K] -> [B]``.

  Pixel ``i`` of true class ``y`` weighs ``class_weights[y]`` (default 1); an example's
  loss is ``sum_i w_i ce_i / sum_i w_i`` over its labelled pixels (PyTorch's weighted
  ``CrossEntropyLoss`` per image), 0 when all its pixels are ignored.
  """
  _check_loss_inputs(logits, labels)
  keep = _labelled_pixels(labels, jnp.ones(labels.shape[:1], bool), ignore_label)
  safe_labels = jnp.where(keep, labels, 0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe_labels)
  weight = keep.astype(jnp.float32)
  if class_weights is not None:
    weight = weight * jnp.asarray(class_weights, jnp.float32)[safe_labels]
  total = jnp.sum(weight, axis=(1, 2))
  return jnp.sum(weight * ce, axis=(1, 2)) / jnp.maximum(total, 1e-12)


def soft_dice_loss(logits: jax.Array, labels: jax.Array, class_weights=None,
                   ignore_label: int | None = None, smooth: float = 1.0) -> jax.Array:
  """Per-example soft Dice loss ``1 - mean_c dice_c``: ``[B, H, W, K] -> [B]``.

  ``dice_c = (2 sum p_c g_c + smooth) / (sum p_c + sum g_c + smooth)`` over the labelled
  pixels, with ``p`` the softmax and ``g`` the one-hot labels; ``smooth`` keeps classes
  absent from both at dice 1. The mean over classes is weighted by ``class_weights``.
  """
  _check_loss_inputs(logits, labels)
  k = logits.shape[-1]
  keep = _labelled_pixels(labels, jnp.ones(labels.shape[:1], bool), ignore_label)
  keep = keep[..., None].astype(jnp.float32)
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) * keep
  truth = jax.nn.one_hot(labels, k, dtype=jnp.float32) * keep
  overlap = jnp.sum(probs * truth, axis=(1, 2))
  size = jnp.sum(probs, axis=(1, 2)) + jnp.sum(truth, axis=(1, 2))
  dice = (2 * overlap + smooth) / (size + smooth)  # [B, K]
  weights = jnp.ones((k,)) if class_weights is None else jnp.asarray(class_weights, jnp.float32)
  return 1.0 - jnp.sum(dice * weights, axis=-1) / jnp.sum(weights)


def cross_entropy_dice_loss(logits: jax.Array, labels: jax.Array, class_weights=None,
                            ignore_label: int | None = None, cross_entropy_weight: float = 1.0,
                            dice_weight: float = 1.0) -> jax.Array:
  """``cross_entropy_weight * pixel_cross_entropy + dice_weight * soft_dice_loss``, ``[B]``."""
  return (cross_entropy_weight * pixel_cross_entropy(logits, labels, class_weights, ignore_label)
          + dice_weight * soft_dice_loss(logits, labels, class_weights, ignore_label))
