"""Classification metrics: accumulated on device in JAX, finished on the host.

Multiclass metrics come from a :class:`ClassificationStats` pytree of sums (loss,
example count, a ``[K, K]`` confusion matrix and top-k hit counts). ``update`` is pure and
jittable, so it runs inside the eval step on whatever device and sharding the batch
lives on; padded rows are ignored through a ``mask``::

  stats = ClassificationStats.empty(num_classes=10)
  for batch in eval_batches:                      # update usually lives in a jitted step
    stats = update(stats, logits, batch["label"], batch["mask"], loss_per_example)
  results = compute(stats)                        # plain Python: ready for JSON

Threshold curves (ROC, precision-recall) need every score: the evaluator gathers the
real rows' scores on the host and :func:`binary_curves` / :func:`one_vs_rest_curves`
post-process them with numpy.

Undefined ratios follow scikit-learn's ``zero_division=0``: a class that is never
predicted has precision 0, a class with no examples has recall 0, and so on. Macro,
micro and weighted averages run over the classes that occur in the labels or the
predictions (scikit-learn's default when ``labels`` is not given); per-class lists
cover all ``K`` classes. AUC and average precision are NaN when the labels hold a
single class (scikit-learn raises or warns there).
"""

from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.errors import DataError, ShapeError


@flax.struct.dataclass
class ClassificationStats:
  """Sums over the examples seen so far (a pytree: pass it through ``jit``).

  Attributes:
    loss_sum: float32 ``[]``, the summed per-example loss.
    count: int32 ``[]``, the number of real (unmasked) examples.
    confusion: int32 ``[K, K]``; ``confusion[t, p]`` counts examples of true class ``t``
      predicted as ``p`` (rows true, columns predicted, as in scikit-learn).
    topk_correct: int32 ``[len(top_k)]``, hits within the ``k`` highest logits.
    top_k: static tuple of the ``k`` values tracked.
  """
  loss_sum: jax.Array
  count: jax.Array
  confusion: jax.Array
  topk_correct: jax.Array
  top_k: tuple[int, ...] = flax.struct.field(pytree_node=False, default=())

  @classmethod
  def empty(cls, num_classes: int, top_k: Sequence[int] = (5,)) -> "ClassificationStats":
    """Zero stats for ``num_classes`` classes.

    ``k = 1`` (that is ``accuracy``) and ``k`` values that are not below ``num_classes``
    (top-k accuracy would be 1 by definition) are dropped, so the default ``(5,)`` tracks
    nothing for 2 to 5 classes.
    """
    if num_classes < 2:
      raise DataError(f"classification needs at least 2 classes, got num_classes={num_classes}")
    ks = tuple(sorted({int(k) for k in top_k if 1 < k < num_classes}))
    return cls(
        loss_sum=jnp.zeros((), jnp.float32),
        count=jnp.zeros((), jnp.int32),
        confusion=jnp.zeros((num_classes, num_classes), jnp.int32),
        topk_correct=jnp.zeros((len(ks),), jnp.int32),
        top_k=ks)

  @property
  def num_classes(self) -> int:
    return self.confusion.shape[0]


def update(stats: ClassificationStats, logits: jax.Array, labels: jax.Array,
           mask: jax.Array, loss_per_example: jax.Array) -> ClassificationStats:
  """Adds one batch to ``stats``; pure and jittable.

  Args:
    stats: the running sums.
    logits: ``[B, K]`` scores (logits or probabilities: only their order matters). With
      ``K == 2`` a single binary logit ``[B]`` or ``[B, 1]`` is accepted too; it predicts
      class 1 when ``logit >= 0``.
    labels: int ``[B]`` true classes in ``[0, K)`` (others make :func:`compute` raise).
    mask: ``[B]`` bool or 0/1 float; rows with ``mask <= 0`` (padding) are ignored.
    loss_per_example: ``[B]`` loss of each example.

  Returns:
    The updated stats. The prediction is the first maximal logit (``argmax``); top-k hits
    break ties by class index the same way, so top-1 equals accuracy.
  """
  k = stats.num_classes
  logits = jnp.asarray(logits)
  if k == 2 and (logits.ndim == 1 or logits.shape[-1] == 1):
    logit = logits.reshape(-1)
    logits = jnp.stack([jnp.zeros_like(logit), jnp.where(logit >= 0, 1.0, -1.0)], axis=-1)
  batch = labels.shape[0]
  if logits.shape != (batch, k) or mask.shape != (batch,) or loss_per_example.shape != (batch,):
    raise ShapeError(
        f"update expects logits [B, {k}], labels [B], mask [B] and loss [B]; got logits "
        f"{list(logits.shape)}, labels {list(labels.shape)}, mask {list(mask.shape)}, "
        f"loss {list(loss_per_example.shape)}")
  valid = mask > 0
  weight = valid.astype(jnp.int32)
  # Padding and out-of-range labels go to row K, which the scatter drops; compute() then
  # sees fewer confusion entries than examples and reports the bad labels.
  labels = jnp.where(valid & (labels >= 0) & (labels < k), labels, k).astype(jnp.int32)
  preds = jnp.argmax(logits, axis=-1)
  confusion = stats.confusion.at[labels, preds].add(weight, mode="drop")
  topk_correct = stats.topk_correct
  if stats.top_k:
    # Rank of the true class = classes scoring higher, plus equal scores at lower indices.
    true_logit = jnp.take_along_axis(logits, jnp.minimum(labels, k - 1)[:, None], axis=-1)
    lower_index = jnp.arange(k)[None, :] < labels[:, None]
    rank = jnp.sum((logits > true_logit) | ((logits == true_logit) & lower_index), axis=-1)
    hits = rank[None, :] < jnp.asarray(stats.top_k)[:, None]  # [len(top_k), B]
    topk_correct = topk_correct + jnp.sum(hits * weight[None, :], axis=-1)
  loss = jnp.where(valid, loss_per_example.astype(jnp.float32), 0.0)
  return stats.replace(
      loss_sum=stats.loss_sum + jnp.sum(loss),
      count=stats.count + jnp.sum(weight),
      confusion=confusion,
      topk_correct=topk_correct)


def merge(a: ClassificationStats, b: ClassificationStats) -> ClassificationStats:
  """Sums two stats with the same classes and top-k values (e.g. from two hosts)."""
  if a.confusion.shape != b.confusion.shape or a.top_k != b.top_k:
    raise ShapeError(
        f"cannot merge stats for {a.num_classes} classes / top-k {a.top_k} with stats for "
        f"{b.num_classes} classes / top-k {b.top_k}")
  return jax.tree.map(jnp.add, a, b)


def count_metrics(tp, fp, tn, fn) -> dict[str, np.ndarray]:
  """Accuracy, precision, recall, specificity and F1 from (arrays of) outcome counts.

  Every ratio whose denominator is zero is 0 (scikit-learn's ``zero_division=0``). F1 is
  ``2 tp / (2 tp + fp + fn)``, the harmonic mean of precision and recall where both exist.
  """
  tp, fp, tn, fn = (np.asarray(v, np.float64) for v in (tp, fp, tn, fn))

  def ratio(num, den):
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)

  return {
      "accuracy": ratio(tp + tn, tp + fp + tn + fn),
      "precision": ratio(tp, tp + fp),
      "recall": ratio(tp, tp + fn),
      "specificity": ratio(tn, tn + fp),
      "f1": ratio(2 * tp, 2 * tp + fp + fn),
  }


def compute(stats: ClassificationStats) -> dict:
  """Final metrics from accumulated stats, as plain Python numbers and lists.

  Returns a dict with ``count``, ``loss`` (mean), ``accuracy``, ``top{k}_accuracy``,
  ``{precision,recall,specificity,f1}_{macro,micro,weighted}``, ``per_class`` (a dict of
  ``K``-long lists: precision, recall, specificity, f1, support) and ``confusion_matrix``
  (``K x K`` nested list, rows true). With no examples every rate is 0.
  """
  cm = np.asarray(jax.device_get(stats.confusion), np.int64)
  count = int(stats.count)
  if cm.sum() != count:
    raise DataError(
        f"{count - cm.sum()} of {count} examples had a label outside [0, {len(cm)}): check "
        "that the dataset's classes match the model's num_classes")
  tp = np.diag(cm)
  support = cm.sum(axis=1)
  predicted = cm.sum(axis=0)
  fp, fn = predicted - tp, support - tp
  tn = count - tp - fp - fn
  per_class = count_metrics(tp, fp, tn, fn)
  present = (support > 0) | (predicted > 0)
  micro = count_metrics(*(v[present].sum() for v in (tp, fp, tn, fn)))
  out = {
      "count": count,
      "loss": float(stats.loss_sum) / count if count else 0.0,
      "accuracy": float(tp.sum() / count) if count else 0.0,
  }
  for k, hits in zip(stats.top_k, np.asarray(jax.device_get(stats.topk_correct))):
    out[f"top{k}_accuracy"] = float(hits / count) if count else 0.0
  for name in ("precision", "recall", "specificity", "f1"):
    values = per_class[name][present]
    out[f"{name}_macro"] = float(values.mean()) if values.size else 0.0
    out[f"{name}_micro"] = float(micro[name])
    out[f"{name}_weighted"] = float((values * support[present]).sum() / count) if count else 0.0
  out["per_class"] = {name: per_class[name].tolist()
                      for name in ("precision", "recall", "specificity", "f1")}
  out["per_class"]["support"] = support.tolist()
  out["confusion_matrix"] = cm.tolist()
  return out


def _check_binary(scores, labels) -> tuple[np.ndarray, np.ndarray]:
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels)
  if scores.ndim != 1 or scores.shape != labels.shape:
    raise ShapeError(f"expected scores [N] and labels [N], got {list(scores.shape)} "
                     f"and {list(labels.shape)}")
  if not np.isin(labels, (0, 1)).all():
    raise DataError(f"binary labels must be 0 or 1, got values {np.unique(labels)[:10].tolist()}")
  return scores, labels.astype(np.int64)


def binary_metrics_at_threshold(scores, labels, threshold: float = 0.5) -> dict:
  """Metrics of the rule ``predict 1 when score >= threshold``.

  Args:
    scores: ``[N]`` scores of the positive class.
    labels: ``[N]`` true labels in {0, 1}.
    threshold: the decision threshold.

  Returns:
    ``threshold``, ``accuracy``, ``precision``, ``recall``, ``specificity``, ``f1`` and
    ``confusion_matrix`` ``[[tn, fp], [fn, tp]]`` (rows true), as plain Python values.
  """
  scores, labels = _check_binary(scores, labels)
  pred = scores >= threshold
  tp = int(np.sum(pred & (labels == 1)))
  fp = int(np.sum(pred & (labels == 0)))
  fn = int(np.sum(~pred & (labels == 1)))
  tn = int(np.sum(~pred & (labels == 0)))
  out = {"threshold": float(threshold)}
  out.update({k: float(v) for k, v in count_metrics(tp, fp, tn, fn).items()})
  out["confusion_matrix"] = [[tn, fp], [fn, tp]]
  return out


def binary_curves(scores, labels) -> dict:
  """Threshold sweep, ROC and precision-recall curves of a binary scorer.

  Every distinct score is a threshold (predict 1 when ``score >= threshold``); tied
  scores move together, as in scikit-learn.

  Args:
    scores: ``[N]`` scores of the positive class (higher = more positive).
    labels: ``[N]`` true labels in {0, 1}.

  Returns:
    A dict of numpy arrays and floats:

    * ``sweep``: per threshold (descending, ``[T]``) ``threshold, tp, fp, tn, fn, accuracy,
      precision, recall, specificity, f1``.
    * ``roc``: ``fpr, tpr, thresholds`` ``[T + 1]``, starting at (0, 0) with threshold
      ``inf`` (scikit-learn's ``roc_curve(drop_intermediate=False)``); ``auc`` (trapezoids).
    * ``pr``: ``precision, recall`` ``[T + 1]`` and ``thresholds`` ``[T]`` in increasing
      threshold order, ending at precision 1, recall 0 (``precision_recall_curve``);
      ``average_precision`` = sum over thresholds of (recall step) x precision, as
      ``average_precision_score``.
    * ``best_f1``: the threshold with the highest F1 and that F1; ``best_youden``: the
      threshold maximizing ``tpr - fpr``.
    * ``num_positive``, ``num_negative``.

    ``auc`` / ``average_precision`` are NaN when the labels hold one class only.
  """
  scores, labels = _check_binary(scores, labels)
  if scores.size == 0:
    raise DataError("binary_curves needs at least one example")
  order = np.argsort(-scores, kind="mergesort")
  s, y = scores[order], labels[order]
  last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
  tp = np.cumsum(y)[last_of_tie]
  fp = (last_of_tie + 1) - tp
  pos, neg = int(tp[-1]), int(fp[-1])
  tn, fn = neg - fp, pos - tp
  thresholds = s[last_of_tie]
  sweep = {"threshold": thresholds, "tp": tp, "fp": fp, "tn": tn, "fn": fn}
  sweep.update(count_metrics(tp, fp, tn, fn))

  fpr = np.r_[0.0, fp / neg] if neg else np.full(tp.size + 1, np.nan)
  tpr = np.r_[0.0, tp / pos] if pos else np.full(tp.size + 1, np.nan)
  has_both = pos > 0 and neg > 0
  auc = float(np.trapezoid(tpr, fpr)) if has_both else float("nan")
  precision = sweep["precision"]
  recall_steps = np.diff(np.r_[0.0, sweep["recall"]])
  ap = float(np.sum(recall_steps * precision)) if has_both else float("nan")
  best = int(np.argmax(sweep["f1"]))
  youden = int(np.argmax(tpr - fpr)) if has_both else 0
  return {
      "sweep": sweep,
      "roc": {"fpr": fpr, "tpr": tpr, "thresholds": np.r_[np.inf, thresholds]},
      "auc": auc,
      "pr": {"precision": np.r_[precision[::-1], 1.0],
             "recall": np.r_[sweep["recall"][::-1], 0.0],
             "thresholds": thresholds[::-1]},
      "average_precision": ap,
      "best_f1": {"threshold": float(thresholds[best]), "f1": float(sweep["f1"][best])},
      "best_youden": {"threshold": float(np.r_[np.inf, thresholds][youden]),
                      "tpr": float(tpr[youden]), "fpr": float(fpr[youden])},
      "num_positive": pos,
      "num_negative": neg,
  }


def one_vs_rest_curves(scores, labels, class_names: Sequence[str] | None = None) -> dict:
  """ROC and precision-recall curves of each class against the rest.

  Args:
    scores: ``[N, K]`` class scores (e.g. softmax probabilities).
    labels: int ``[N]`` true classes in ``[0, K)``.
    class_names: ``K`` names; defaults to ``"0" .. "K-1"``.

  Returns:
    ``per_class``: ``{name: binary_curves(...)}`` for the classes that have both
    positives and negatives; ``skipped``: names of the others; ``macro_auc`` and
    ``macro_average_precision``: unweighted means over ``per_class`` (NaN if empty; equal
    to scikit-learn's ``roc_auc_score(multi_class="ovr")`` when every class occurs).
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels, np.int64)
  if scores.ndim != 2 or labels.shape != scores.shape[:1]:
    raise ShapeError(f"expected scores [N, K] and labels [N], got {list(scores.shape)} "
                     f"and {list(labels.shape)}")
  k = scores.shape[1]
  names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
  if len(names) != k:
    raise ShapeError(f"got {len(names)} class names for {k} score columns")
  per_class, skipped = {}, []
  for c, name in enumerate(names):
    positives = labels == c
    if positives.all() or not positives.any():
      skipped.append(name)
    else:
      per_class[name] = binary_curves(scores[:, c], positives.astype(np.int64))

  def mean(key):
    values = [curves[key] for curves in per_class.values()]
    return float(np.mean(values)) if values else float("nan")

  return {"per_class": per_class, "skipped": skipped, "macro_auc": mean("auc"),
          "macro_average_precision": mean("average_precision")}


def to_jsonable(obj):
  """``obj`` with numpy arrays and scalars turned into lists and Python numbers.

  Non-finite floats become ``None`` so that the result is strict JSON.
  """
  if isinstance(obj, dict):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, (np.ndarray, jax.Array)):
    return to_jsonable(np.asarray(obj).tolist())
  if isinstance(obj, np.generic):
    obj = obj.item()
  if isinstance(obj, float) and not np.isfinite(obj):
    return None
  return obj
