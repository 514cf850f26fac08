"""Object detection: a one-stage grid detector trained on ``{"image", "boxes"}`` batches.

The network (``config.model``, e.g. ``yolo_simple``; see :mod:`cnn_jax.models.detector`)
maps images ``[B, H, W, C]`` to raw grid outputs ``[B, S, S, 5 nb + K]`` for the ``K`` box
classes of the dataset. A dataset whose first class is ``background`` (the mask classes of
``shapes`` and ``mnist_scenes``) has box classes ``class_names[1:]``, as its
``box_classes`` are mask class minus one; otherwise every class name is a box class.

* Loss: the sum-squared YOLO v1 loss of Redmon et al. 2016 per image
  (:func:`~cnn_jax.models.detector.yolo_loss`, ``task.lambda_coord`` 5 and
  ``task.lambda_noobj`` 0.5 as in the paper).
* Predictions: :func:`~cnn_jax.models.detector.detect` decodes every box and keeps at most
  ``task.max_detections`` after per-class NMS (``task.nms_iou``, ``task.score_threshold``;
  ``task.class_agnostic`` for NMS across classes), padded and masked, inside ``jit``.
* Per-epoch validation, ``val_map50`` (the primary metric): VOC all-point mAP at IoU 0.5
  from statistics the loop can sum on the device. Each image's detections are matched to
  its ground truth by the VOC rule (the same as the host metrics) inside ``eval_step``,
  and true and false positives are counted per class in ``task.score_bins`` score bins;
  ``summarize`` reads the precision-recall curve at the bin edges. This equals the exact
  mAP except that detections within one bin (``1 / score_bins`` wide) are ranked as one
  block, a difference far below the epoch-to-epoch noise.
* Final evaluation (host side, :class:`~cnn_jax.metrics.detection.DetectionCollector`,
  equal to ``pycocotools`` and the VOC devkit): ``map50`` (VOC all-point mAP@0.5, exact),
  ``voc07_map50`` (11-point), ``coco_map`` (mAP@[.5:.95]), ``coco_map50``, ``coco_map75``
  and per-class APs.
* Figures: predicted and ground-truth boxes on the first test images;
  :meth:`DetectionTask.predict_image` draws the boxes found in a user's image
  (``python -m cnn_jax predict``).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data import display_name
from cnn_jax.errors import ConfigError
from cnn_jax.metrics.detection import (VOC_IOU_THRESHOLD, DetectionCollector, box_iou,
                                       voc_average_precision)
from cnn_jax.models import detector
from cnn_jax.tasks.base import TASKS, SupervisedTask, masked_sum
from cnn_jax.tasks.classification import build_model

NUM_FIGURE_EXAMPLES = 8
FIGURE_SCORE_THRESHOLD = 0.3
PREDICTION_KEYS = ("boxes", "scores", "classes", "valid")


@TASKS.register("detection")
class DetectionTask(SupervisedTask):
  """Boxes with classes and scores from a grid detector; see the module docstring."""
  name = "detection"
  inputs = {"image": "image", "boxes": "boxes", "box_classes": "other",
            "box_valid": "box_valid"}
  options = {"lambda_coord": 5.0, "lambda_noobj": 0.5, "max_detections": 100,
             "nms_iou": 0.5, "score_threshold": 0.01, "class_agnostic": False,
             "score_bins": 1000}
  primary_metric = ("val_map50", "max")

  def __init__(self, config, data, **kwargs):
    super().__init__(config, data, **kwargs)
    train = data.splits["train"]
    if "boxes" not in train:
      raise ConfigError(f"task.name='detection' needs a dataset with boxes (e.g. "
                        f"dataset.name='shapes' or 'mnist_scenes'); this one has "
                        f"{', '.join(sorted(train))}.")
    names = self.class_names
    self.box_class_names = names[1:] if names and names[0] == "background" else names
    self.num_box_classes = len(self.box_class_names)
    model = self.build_model()
    if not isinstance(model, detector.YoloDetector):
      raise ConfigError(f"task.name='detection' needs a detector model (e.g. "
                        f"model.name='yolo_simple'), got {config.model.name!r}.")
    self.num_boxes = model.num_boxes
    self._jitted_detections = jax.jit(self._detections)  # one compile, not one per op
    if int(self.opts["max_detections"]) < 1 or int(self.opts["score_bins"]) < 1:
      raise ConfigError(f"task.max_detections and task.score_bins must be >= 1, got "
                        f"{self.opts['max_detections']} and {self.opts['score_bins']}.")

  def build_model(self):
    return build_model(self.config, num_classes=self.num_box_classes)

  def image_loss(self, raw: jax.Array, batch: dict) -> jax.Array:
    """The YOLO loss ``[B]`` of raw outputs against the batch's boxes."""
    return detector.yolo_loss(raw, batch["boxes"], batch["box_classes"], batch["box_valid"],
                              num_boxes=self.num_boxes,
                              lambda_coord=float(self.opts["lambda_coord"]),
                              lambda_noobj=float(self.opts["lambda_noobj"]))

  def loss(self, outputs, batch, train):
    raw, _ = outputs
    return self.image_loss(raw, batch), {}

  def detect(self, raw: jax.Array) -> dict[str, jax.Array]:
    """Padded predictions ``{"boxes" [B, D, 4], "scores" [B, D], "classes" [B, D],
    "valid" [B, D]}`` (``D = task.max_detections``) of raw outputs; jittable."""
    return detector.detect(raw, num_boxes=self.num_boxes,
                           max_detections=int(self.opts["max_detections"]),
                           iou_threshold=float(self.opts["nms_iou"]),
                           score_threshold=float(self.opts["score_threshold"]),
                           class_agnostic=bool(self.opts["class_agnostic"]))

  def eval_step(self, state, batch):
    batch = self.prepare_batch(None, batch, train=False)
    raw, _ = self.predict(state, batch)
    predictions = self.detect(raw)
    real = batch["valid"][:, None]  # padding rows add no detections and no ground truth
    sums = {"loss": masked_sum(self.image_loss(raw, batch), batch["valid"]),
            **binned_matches({**predictions, "valid": predictions["valid"] & real},
                             batch["boxes"], batch["box_classes"], batch["box_valid"] & real,
                             self.num_box_classes, int(self.opts["score_bins"]))}
    return sums, {**predictions, "index": batch["index"]}

  def summarize(self, sums) -> dict[str, float]:
    """The mean loss and the score-binned VOC mAP@0.5 (``map50``) of the summed counts."""
    loss_sum, count = sums["loss"]
    return {"loss": float(loss_sum) / max(float(count), 1.0),
            "map50": binned_map(sums["true_positives"], sums["false_positives"],
                                sums["num_gt"])}

  def progress_metrics(self, metrics):
    return {k: metrics[k] for k in ("loss", "map50") if k in metrics}

  def evaluate(self, evaluator, state, data, split):
    """Exact VOC and COCO mAPs of ``split`` from the collected padded predictions."""
    arrays = data.splits[split]
    sums, outputs = evaluator.run(state, arrays, with_outputs=True)
    rows = outputs["index"]
    collector = DetectionCollector()
    collector.add({k: outputs[k] for k in PREDICTION_KEYS}, arrays["boxes"][rows],
                  arrays["box_classes"][rows], arrays["box_valid"][rows])
    metrics = collector.compute(self.num_box_classes,
                                max_detections=int(self.opts["max_detections"]))
    summary = self.summarize(sums)
    return {"loss": summary["loss"], "map50": metrics.pop("voc_map50"),
            "binned_map50": summary["map50"], **metrics,
            "box_class_names": self.box_class_names}, outputs

  def describe_results(self, results):
    return (f"mAP@0.5 {results['map50']:.4f} (VOC07 11-point {results['voc07_map50']:.4f})  "
            f"COCO mAP@[.5:.95] {results['coco_map']:.4f}")

  # ---- predictions on the host: figures and the predict command ----
  def predict_boxes(self, state, images: np.ndarray) -> dict[str, np.ndarray]:
    """Padded predictions (as :meth:`detect`) of images ``[N, H, W, C]`` in [0, 1]."""
    return jax.device_get(self._jitted_detections(state, jnp.asarray(images, jnp.float32)))

  def _detections(self, state, images: jax.Array) -> dict[str, jax.Array]:
    batch = self.prepare_batch(None, {"image": images}, train=False)
    raw, _ = self.predict(state, batch)
    return self.detect(raw)

  def figures(self, state, data, split, results, outputs, out_dir):
    from cnn_jax.figures.detection import plot_detections
    arrays = data.splits[split]
    n = NUM_FIGURE_EXAMPLES
    rows = outputs["index"][:n]
    return {"boxes": plot_detections(
        arrays["image"][rows], {k: outputs[k][:n] for k in PREDICTION_KEYS},
        os.path.join(out_dir, f"{split}_boxes.png"), boxes=arrays["boxes"][rows],
        classes=arrays["box_classes"][rows], valid=arrays["box_valid"][rows],
        class_names=self.box_class_names, score_threshold=FIGURE_SCORE_THRESHOLD,
        title=(f"{self.config.model.name} on {display_name(self.config.dataset)} ({split}): "
               f"mAP@0.5 {results['map50']:.3f}"))}

  def predict_image(self, state, image: np.ndarray, out_path: str) -> str:
    """Draws the boxes found in ``image`` ``[H, W, C]`` (in [0, 1], at the run's input
    size) with their classes and scores; returns ``out_path``."""
    from cnn_jax.figures.detection import plot_detections
    predictions = self.predict_boxes(state, image[None])
    return plot_detections(image[None], predictions, out_path,
                           class_names=self.box_class_names,
                           score_threshold=FIGURE_SCORE_THRESHOLD,
                           title=f"{self.config.model.name} ({self.config.dataset.name})")


def binned_matches(predictions: dict, boxes: jax.Array, classes: jax.Array, valid: jax.Array,
                   num_classes: int, score_bins: int) -> dict[str, jax.Array]:
  """Summable VOC@0.5 statistics of one batch; jittable.

  Each image's detections, by decreasing score, are matched as the VOC devkit does: a
  detection takes the ground-truth box of its class that it overlaps most, and is a true
  positive when that IoU is above 0.5 and no higher-scored detection took the box.

  Args:
    predictions: padded ``{"boxes" [B, D, 4], "scores" [B, D], "classes" [B, D],
      "valid" [B, D]}`` sorted by decreasing score (as from NMS).
    boxes, classes, valid: the ground truth ``[B, M, 4]``, ``[B, M]``, ``[B, M]`` (set
      ``valid`` False for the boxes of padding rows).
    num_classes: ``K``.
    score_bins: the number of equal score bins in [0, 1].

  Returns:
    ``"true_positives"`` and ``"false_positives"`` ``[K, score_bins]`` float32 counts of
    the valid detections by class and score bin, and ``"num_gt"`` ``[K]`` the real boxes.
  """

  def one_image(pred_boxes, pred_scores, pred_classes, pred_valid, gt_boxes, gt_classes,
                gt_valid):
    same_class = (pred_classes[:, None] == gt_classes[None, :]) & gt_valid[None, :]
    ious = jnp.where(same_class, box_iou(pred_boxes, gt_boxes), -1.0)  # [D, M]
    best = jnp.argmax(ious, axis=1)
    hit = (jnp.take_along_axis(ious, best[:, None], axis=1)[:, 0] > VOC_IOU_THRESHOLD) \
        & pred_valid

    def visit(d, carry):
      taken, true_positive = carry
      new = hit[d] & ~taken[best[d]]
      return taken.at[best[d]].set(taken[best[d]] | new), true_positive.at[d].set(new)

    _, true_positive = jax.lax.fori_loop(
        0, pred_scores.shape[0], visit,
        (jnp.zeros(gt_classes.shape, bool), jnp.zeros(pred_scores.shape, bool)))
    return true_positive

  true_positive = jax.vmap(one_image)(
      predictions["boxes"], predictions["scores"], predictions["classes"],
      predictions["valid"], boxes, classes, valid)
  bins = jnp.clip(jnp.floor(predictions["scores"] * score_bins), 0, score_bins - 1)
  cell = (predictions["classes"] * score_bins + bins.astype(jnp.int32)).ravel()

  def counts(flags):  # [B, D] bool -> [K, score_bins]
    return jnp.zeros(num_classes * score_bins, jnp.float32).at[cell].add(
        flags.ravel().astype(jnp.float32)).reshape(num_classes, score_bins)

  pred_valid = predictions["valid"].astype(bool)
  num_gt = jnp.zeros(num_classes, jnp.float32).at[classes.ravel()].add(
      valid.ravel().astype(jnp.float32))
  return {"true_positives": counts(true_positive & pred_valid),
          "false_positives": counts(~true_positive & pred_valid), "num_gt": num_gt}


def binned_map(true_positives, false_positives, num_gt) -> float:
  """VOC all-point mAP from :func:`binned_matches` counts summed over a split: per class
  with ground truth, the precision-recall curve at the score-bin edges (highest scores
  first); the mean over those classes, 0 when no class has ground truth."""
  tp, fp, num_gt = (np.asarray(a, np.float64) for a in (true_positives, false_positives,
                                                        num_gt))
  aps = []
  for k in np.flatnonzero(num_gt > 0):
    filled = (tp[k] + fp[k]) > 0
    cum_tp = np.cumsum(tp[k][::-1])[::-1][filled][::-1]  # bins from the highest score down
    cum_fp = np.cumsum(fp[k][::-1])[::-1][filled][::-1]
    aps.append(voc_average_precision(cum_tp / num_gt[k], cum_tp / np.maximum(
        cum_tp + cum_fp, 1.0)) if len(cum_tp) else 0.0)
  return float(np.mean(aps)) if aps else 0.0
