"""Detection metrics: box IoU and NMS in JAX (jittable), mAP on the host.

Boxes are ``(y_min, x_min, y_max, x_max)`` fractions of the image height and width, the
layout of the ``"boxes"`` input (:mod:`cnn_jax.data.sources`). IoU is scale invariant per
axis, so fractions and pixels give the same values and the metrics need no image sizes.

* :func:`box_iou` (pairwise), :func:`matched_box_iou` (elementwise) and
  :func:`non_max_suppression` / :func:`select_detections` run inside ``jit``: NMS keeps at
  most ``max_outputs`` boxes and returns them padded, with a mask.
* :class:`DetectionCollector` keeps each image's predictions and ground truth on the host;
  ``compute`` gives, over a whole split:

  - ``voc_map50`` / ``voc07_map50``: PASCAL VOC mAP at IoU 0.5 with all-point (VOC 2010+)
    and 11-point (VOC 2007) interpolation, matching as the VOC devkit does (Everingham et
    al. 2010): a detection takes the ground-truth box it overlaps most; it is a true
    positive when that IoU is above 0.5 and the box was not taken by a higher score.
  - ``coco_map`` (mAP@[.5:.95]), ``coco_map50``, ``coco_map75``: COCO's AP as
    ``pycocotools.cocoeval.COCOeval`` computes it for area "all" and ``maxDets`` 100 per
    image and class: greedy matching to the best still-unmatched box with IoU >= t, the
    precision envelope read at 101 recall points, averaged over the 10 thresholds.

  Classes without ground truth are left out of the means (COCO marks them -1); their
  per-class AP is NaN, and so is a mean over no class. Ties in score are broken by image
  order, then by order within the image (COCOeval's stable sort).

::

  collector = DetectionCollector()
  for batch in eval_batches:
    predictions = predict(state, batch)    # {"boxes", "scores", "classes", "valid"}, padded
    collector.add(predictions, batch["boxes"], batch["box_classes"], batch["box_valid"],
                  batch["mask"])
  results = collector.compute(num_classes)
"""

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.errors import ShapeError

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # as COCOeval: 0.5, 0.55, ..., 0.95
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)
VOC_IOU_THRESHOLD = 0.5


def box_area(boxes):
  """``[..., 4] -> [...]`` areas of ``(y_min, x_min, y_max, x_max)`` boxes (0 if empty)."""
  xp = np if isinstance(boxes, np.ndarray) else jnp
  return (xp.maximum(boxes[..., 2] - boxes[..., 0], 0) *
          xp.maximum(boxes[..., 3] - boxes[..., 1], 0))


def matched_box_iou(boxes_a, boxes_b):
  """IoU of corresponding boxes, ``[..., 4] x [..., 4] -> [...]`` (shapes broadcast); 0
  where both are empty. NumPy inputs give a NumPy result, anything else is ``jax.numpy``."""
  xp = np if isinstance(boxes_a, np.ndarray) and isinstance(boxes_b, np.ndarray) else jnp
  top_left = xp.maximum(boxes_a[..., :2], boxes_b[..., :2])
  bottom_right = xp.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
  inter = xp.prod(xp.maximum(bottom_right - top_left, 0), axis=-1)
  union = box_area(boxes_a) + box_area(boxes_b) - inter
  return xp.where(union > 0, inter / xp.where(union > 0, union, 1), 0)


def box_iou(boxes_a, boxes_b):
  """Pairwise intersection over union, ``[N, 4] x [M, 4] -> [N, M]``; jittable.

  NumPy inputs give a NumPy result (used on the host), as in :func:`matched_box_iou`.
  """
  return matched_box_iou(boxes_a[:, None, :], boxes_b[None, :, :])


def non_max_suppression(boxes: jax.Array, scores: jax.Array, *, max_outputs: int,
                        iou_threshold: float = 0.5, score_threshold: float = 0.0,
                        classes: jax.Array | None = None,
                        valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Greedy NMS with a static output size; jittable (``vmap`` it over a batch).

  Boxes are visited from the highest score down; a box is kept unless a kept box overlaps
  it with IoU above ``iou_threshold``. With ``classes``, only boxes of the same class
  suppress each other (per-class NMS); without, NMS is class-agnostic.

  Args:
    boxes: ``[N, 4]`` boxes ``(y_min, x_min, y_max, x_max)``.
    scores: ``[N]``; boxes scoring ``<= score_threshold`` are never kept.
    max_outputs: the number of output slots ``D``.
    iou_threshold: the overlap above which a lower-scored box is suppressed.
    score_threshold: the minimum score (exclusive) of a kept box.
    classes: optional ``[N]`` int class of each box, for per-class NMS.
    valid: optional ``[N]`` bool, False for padding boxes.

  Returns:
    ``(indices [D] int32, kept [D] bool)``: the kept boxes' indices into ``boxes`` by
    decreasing score, then padding slots (``kept`` False, index 0).
  """
  n = boxes.shape[0]
  candidate = scores > score_threshold
  if valid is not None:
    candidate &= valid
  order = jnp.argsort(-scores, stable=True)
  overlaps = box_iou(boxes[order], boxes[order]) > iou_threshold
  if classes is not None:
    overlaps &= classes[order][:, None] == classes[order][None, :]
  candidate = candidate[order]

  def visit(i, kept):
    suppressed = jnp.any(kept & overlaps[:, i])  # only boxes before i can be kept yet
    return kept.at[i].set(candidate[i] & ~suppressed)

  kept = jax.lax.fori_loop(0, n, visit, jnp.zeros((n,), bool))
  if max_outputs > n:
    kept = jnp.pad(kept, (0, max_outputs - n))
    order = jnp.pad(order, (0, max_outputs - n))
  picked = jnp.argsort(~kept, stable=True)[:max_outputs]  # kept ones first, by score
  kept = kept[picked]
  return jnp.where(kept, order[picked], 0).astype(jnp.int32), kept


def select_detections(boxes: jax.Array, scores: jax.Array, classes: jax.Array, *,
                      max_outputs: int = 100, iou_threshold: float = 0.5,
                      score_threshold: float = 0.01,
                      class_agnostic: bool = False) -> dict[str, jax.Array]:
  """Batched NMS to fixed-size padded predictions; jittable.

  Args:
    boxes: ``[B, N, 4]`` candidate boxes.
    scores: ``[B, N]`` their scores.
    classes: ``[B, N]`` int their classes.
    max_outputs, iou_threshold, score_threshold: as in :func:`non_max_suppression`.
    class_agnostic: suppress across classes instead of within each class.

  Returns:
    ``{"boxes": [B, D, 4], "scores": [B, D], "classes": [B, D] int32, "valid": [B, D]}``
    with ``D = max_outputs``, by decreasing score; padding slots are zero and not valid.
  """

  def one_image(boxes, scores, classes):
    indices, kept = non_max_suppression(
        boxes, scores, max_outputs=max_outputs, iou_threshold=iou_threshold,
        score_threshold=score_threshold, classes=None if class_agnostic else classes)
    return {"boxes": jnp.where(kept[:, None], boxes[indices], 0),
            "scores": jnp.where(kept, scores[indices], 0),
            "classes": jnp.where(kept, classes[indices], 0).astype(jnp.int32),
            "valid": kept}

  return jax.vmap(one_image)(boxes, scores, classes)


def voc_average_precision(recall: np.ndarray, precision: np.ndarray,
                          eleven_point: bool = False) -> float:
  """VOC AP from the recall and precision after each detection (by decreasing score).

  All-point (VOC 2010+): the area under the precision envelope (precision made
  non-increasing in recall). 11-point (VOC 2007): the mean, over recall levels 0, 0.1, ...,
  1, of the best precision at a recall at least that level (0 if never reached).
  """
  recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
  if eleven_point:
    return float(np.mean([precision[recall >= level].max(initial=0.0)
                          for level in np.linspace(0.0, 1.0, 11)]))
  recall = np.concatenate([[0.0], recall, [1.0]])
  envelope = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
  steps = np.flatnonzero(recall[1:] != recall[:-1])
  return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))


def _coco_matches(ious: np.ndarray) -> np.ndarray:
  """``[D, G]`` IoUs of score-sorted detections -> ``[T, D]`` bool matched per threshold.

  COCOeval's rule: each detection takes the still-unmatched ground truth of highest IoU
  ``>= t`` (the last one among equals); the thresholds are handled side by side.
  """
  thresholds = np.minimum(COCO_IOU_THRESHOLDS, 1 - 1e-10)
  matched = np.zeros((len(thresholds), ious.shape[0]), bool)
  if not ious.shape[1]:
    return matched
  taken = np.zeros((len(thresholds), ious.shape[1]), bool)
  everywhere = np.arange(len(thresholds))
  for d in range(ious.shape[0]):
    available = np.where(taken, -np.inf, ious[d])  # [T, G]
    best = available.shape[1] - 1 - np.argmax(available[:, ::-1], axis=1)
    matched[:, d] = available[everywhere, best] >= thresholds
    taken[everywhere[matched[:, d]], best[matched[:, d]]] = True
  return matched


def _voc_true_positives(ious: np.ndarray) -> np.ndarray:
  """``[D, G]`` IoUs of score-sorted detections -> ``[D]`` bool, the VOC devkit's rule."""
  true_positive = np.zeros(ious.shape[0], bool)
  taken = np.zeros(ious.shape[1], bool)
  for d in range(ious.shape[0] if ious.shape[1] else 0):
    best = np.argmax(ious[d])
    if ious[d, best] > VOC_IOU_THRESHOLD and not taken[best]:
      taken[best] = true_positive[d] = True
  return true_positive


def _coco_precisions(true_positive: np.ndarray, num_gt: int) -> np.ndarray:
  """``[D]`` bool by decreasing score -> ``[R]`` interpolated precision at the recall points."""
  tp = np.cumsum(true_positive, dtype=np.float64)
  fp = np.cumsum(~true_positive, dtype=np.float64)
  recall = tp / num_gt
  precision = np.maximum.accumulate((tp / (tp + fp + np.spacing(1)))[::-1])[::-1]
  at = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")
  reached = at < len(precision)  # recall points beyond the last detection get precision 0
  interpolated = np.zeros(len(COCO_RECALL_POINTS))
  interpolated[reached] = precision[at[reached]]
  return interpolated


class DetectionCollector:
  """Keeps each real image's valid predictions and ground truth on the host.

  ``add`` takes one batch of padded arrays (``[B, D, ...]`` predictions, ``[B, M, ...]``
  ground truth); ``compute`` returns the metrics of everything added (see the module
  docstring).
  """

  def __init__(self):
    self._images: list[tuple[np.ndarray, ...]] = []

  def __len__(self) -> int:
    return len(self._images)

  def add(self, predictions: dict, boxes, classes, valid, mask=None) -> None:
    """Appends one batch.

    Args:
      predictions: ``{"boxes": [B, D, 4], "scores": [B, D], "classes": [B, D],
        "valid": [B, D]}`` (as from :func:`select_detections`).
      boxes: ``[B, M, 4]`` ground-truth boxes.
      classes: ``[B, M]`` int their classes.
      valid: ``[B, M]`` bool, the real boxes.
      mask: optional ``[B]``, False for the padding rows of an eval batch.
    """
    pred = {k: np.asarray(predictions[k]) for k in ("boxes", "scores", "classes", "valid")}
    boxes, classes, valid = np.asarray(boxes), np.asarray(classes), np.asarray(valid, bool)
    if pred["boxes"].ndim != 3 or boxes.ndim != 3 or pred["boxes"].shape[-1] != 4 \
        or boxes.shape[-1] != 4:
      raise ShapeError(f"expected predicted boxes [B, D, 4] and ground-truth boxes [B, M, 4], "
                       f"got {list(pred['boxes'].shape)} and {list(boxes.shape)}")
    rows = np.ones(len(boxes), bool) if mask is None else np.asarray(mask) > 0
    for i in np.flatnonzero(rows):
      p, g = pred["valid"][i].astype(bool), valid[i]
      self._images.append((pred["boxes"][i][p].astype(np.float64),
                           pred["scores"][i][p].astype(np.float64),
                           pred["classes"][i][p].astype(np.int64),
                           boxes[i][g].astype(np.float64), classes[i][g].astype(np.int64)))

  def compute(self, num_classes: int, max_detections: int = 100) -> dict:
    """VOC and COCO mAP over the images added; ``max_detections`` per image and class
    (COCO's ``maxDets``; the VOC metrics use every detection).

    Returns:
      ``voc_map50``, ``voc07_map50``, ``coco_map``, ``coco_map50``, ``coco_map75`` (floats,
      NaN without ground truth), ``voc_ap50_per_class`` and ``coco_ap_per_class`` (``K``
      floats, NaN for classes without ground truth), ``num_images``, ``num_gt``,
      ``num_predictions``.
    """
    num_gt = np.zeros(num_classes, np.int64)
    # Per class: (score, image, rank in image, VOC true positive, COCO matches [T]) rows.
    rows = [[] for _ in range(num_classes)]
    for image, (p_boxes, p_scores, p_classes, g_boxes, g_classes) in enumerate(self._images):
      for k in np.union1d(p_classes, g_classes):
        dets = np.flatnonzero(p_classes == k)
        dets = dets[np.argsort(-p_scores[dets], kind="stable")]
        gts = g_boxes[g_classes == k]
        num_gt[k] += len(gts)
        ious = box_iou(p_boxes[dets], gts)
        voc = _voc_true_positives(ious)
        coco = _coco_matches(ious[:max_detections])
        for rank, d in enumerate(dets):
          rows[k].append((p_scores[d], image, rank, voc[rank],
                          coco[:, rank] if rank < max_detections else None))
    voc_ap = np.full(num_classes, np.nan)
    voc07_ap = np.full(num_classes, np.nan)
    coco_precision = np.full((num_classes, len(COCO_IOU_THRESHOLDS), len(COCO_RECALL_POINTS)),
                             np.nan)
    for k in np.flatnonzero(num_gt):
      ranked = sorted(rows[k], key=lambda row: (-row[0], row[1], row[2]))
      voc_tp = np.array([row[3] for row in ranked], bool)
      tp = np.cumsum(voc_tp)
      recall = tp / num_gt[k]
      precision = tp / np.arange(1, len(tp) + 1)
      voc_ap[k] = voc_average_precision(recall, precision)
      voc07_ap[k] = voc_average_precision(recall, precision, eleven_point=True)
      coco = np.array([row[4] for row in ranked if row[4] is not None], bool).reshape(
          -1, len(COCO_IOU_THRESHOLDS))
      coco_precision[k] = [_coco_precisions(coco[:, t], num_gt[k])
                           for t in range(len(COCO_IOU_THRESHOLDS))]
    has_gt = num_gt > 0

    def mean(values):
      return float(np.mean(values[has_gt])) if has_gt.any() else float("nan")

    return {
        "voc_map50": mean(voc_ap),
        "voc07_map50": mean(voc07_ap),
        "coco_map": mean(coco_precision.mean(axis=(1, 2))),
        "coco_map50": mean(coco_precision[:, 0].mean(axis=1)),
        "coco_map75": mean(coco_precision[:, 5].mean(axis=1)),
        "voc_ap50_per_class": voc_ap.tolist(),
        "coco_ap_per_class": coco_precision.mean(axis=(1, 2)).tolist(),
        "num_images": len(self._images),
        "num_gt": int(num_gt.sum()),
        "num_predictions": int(sum(len(image[1]) for image in self._images)),
    }


def detection_metrics(predictions: dict, boxes, classes, valid, *, num_classes: int,
                      max_detections: int = 100) -> dict:
  """:meth:`DetectionCollector.compute` for one set of padded arrays (a whole split)."""
  collector = DetectionCollector()
  collector.add(predictions, boxes, classes, valid)
  return collector.compute(num_classes, max_detections)
