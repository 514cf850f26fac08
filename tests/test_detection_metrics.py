"""Detection metrics: IoU values, NMS against a plain NumPy NMS, VOC AP by hand and COCO mAP
against pycocotools' COCOeval on the same predictions."""

import contextlib
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.errors import ShapeError
from cnn_jax.metrics.detection import (DetectionCollector, box_iou, detection_metrics,
                                       non_max_suppression, select_detections,
                                       voc_average_precision)

HEIGHT, WIDTH = 48, 64  # pixels of the fake images, for the COCO conversion only


def random_boxes(rng, shape, min_size=0.05):
  """``shape + [4]`` random boxes ``(y_min, x_min, y_max, x_max)`` inside the unit square."""
  corner = rng.uniform(0, 1 - min_size, shape + (2,))
  size = rng.uniform(min_size, 1, shape + (2,)) * (1 - corner)
  return np.concatenate([corner, corner + size], -1).astype(np.float32)


def ordered_corners(boxes):
  """Swaps corners where noise made ``min > max``."""
  low, high = np.minimum(boxes[..., :2], boxes[..., 2:]), np.maximum(boxes[..., :2],
                                                                       boxes[..., 2:])
  return np.concatenate([low, high], -1)


def test_box_iou_known_values():
  a = np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5], [0, 0, 0, 0]], np.float32)
  b = np.array([[0, 0, 0.5, 1], [0.25, 0.25, 0.75, 0.75], [2, 2, 3, 3], [0, 0, 0, 0]],
               np.float32)
  expected = np.array([[0.5, 0.25, 0, 0], [0.5, 1 / 7, 0, 0], [0, 0, 0, 0]])
  np.testing.assert_allclose(box_iou(a, b), expected, atol=1e-7)
  jitted = jax.jit(box_iou)(jnp.asarray(a), jnp.asarray(b))
  assert isinstance(jitted, jax.Array) and jitted.shape == (3, 4)
  np.testing.assert_allclose(np.asarray(jitted), expected, atol=1e-6)


def numpy_greedy_nms(boxes, scores, iou_threshold, score_threshold):
  """The textbook loop: take the best box, drop those overlapping it, repeat."""
  order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > score_threshold]
  kept = []
  while order:
    best, order = order[0], order[1:]
    kept.append(best)
    order = [i for i in order if box_iou(boxes[best:best + 1], boxes[i:i + 1])[0, 0]
             <= iou_threshold]
  return kept


@pytest.mark.parametrize("class_agnostic", [True, False])
def test_nms_equals_numpy_greedy_nms(class_agnostic):
  rng = np.random.default_rng(0)
  num_images, n, max_outputs = 6, 60, 12
  boxes = random_boxes(rng, (num_images, n), min_size=0.2)
  scores = rng.uniform(0, 1, (num_images, n)).astype(np.float32)
  classes = rng.integers(0, 3, (num_images, n)).astype(np.int32)
  out = jax.jit(lambda b, s, c: select_detections(
      b, s, c, max_outputs=max_outputs, iou_threshold=0.4, score_threshold=0.1,
      class_agnostic=class_agnostic))(boxes, scores, classes)
  total_kept = 0
  for i in range(num_images):
    if class_agnostic:
      expected = numpy_greedy_nms(boxes[i], scores[i], 0.4, 0.1)
    else:
      expected = [j for k in range(3) for j in np.flatnonzero(classes[i] == k)[
          numpy_greedy_nms(boxes[i][classes[i] == k], scores[i][classes[i] == k], 0.4, 0.1)]]
      expected = sorted(expected, key=lambda j: -scores[i, j])
    expected = expected[:max_outputs]
    valid = np.asarray(out["valid"][i])
    assert valid.sum() == len(expected) and not valid[len(expected):].any()
    np.testing.assert_array_equal(np.asarray(out["boxes"][i][valid]), boxes[i][expected])
    np.testing.assert_array_equal(np.asarray(out["classes"][i][valid]), classes[i][expected])
    assert np.all(np.asarray(out["boxes"][i][~valid]) == 0)
    total_kept += len(expected)
  assert total_kept > num_images * 3  # the check is not vacuous


def test_nms_pads_when_asked_for_more_outputs_than_boxes():
  boxes = jnp.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.49], [0.6, 0.6, 1, 1]])
  nms = jax.jit(lambda b, s, v: non_max_suppression(b, s, max_outputs=5, valid=v))
  indices, kept = nms(boxes, jnp.array([0.9, 0.8, 0.7]), jnp.array([True, True, False]))
  assert indices.tolist() == [0, 0, 0, 0, 0] and kept.tolist() == [True] + [False] * 4
  indices, kept = nms(boxes, jnp.array([0.9, 0.8, 0.7]), jnp.array([True, True, True]))
  assert indices.tolist() == [0, 2, 0, 0, 0] and kept.tolist() == [True, True] + [False] * 3


def coco_eval(predictions, boxes, classes, valid, num_classes):
  """pycocotools' AP@[.5:.95], AP@.5 and AP@.75 (area "all", maxDets 100)."""
  coco_lib = pytest.importorskip("pycocotools.coco")
  cocoeval_lib = pytest.importorskip("pycocotools.cocoeval")

  def xywh(box):
    y0, x0, y1, x1 = (float(v) for v in box)
    return [x0 * WIDTH, y0 * HEIGHT, (x1 - x0) * WIDTH, (y1 - y0) * HEIGHT]

  annotations, results = [], []
  for i in range(len(boxes)):
    for box, k in zip(boxes[i][valid[i]], classes[i][valid[i]]):
      bbox = xywh(box)
      annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(k),
                          "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
    keep = np.asarray(predictions["valid"][i], bool)
    for box, k, s in zip(predictions["boxes"][i][keep], predictions["classes"][i][keep],
                         predictions["scores"][i][keep]):
      results.append({"image_id": i + 1, "category_id": int(k), "bbox": xywh(box),
                      "score": float(s)})
  with contextlib.redirect_stdout(io.StringIO()):
    ground_truth = coco_lib.COCO()
    ground_truth.dataset = {
        "images": [{"id": i + 1, "height": HEIGHT, "width": WIDTH} for i in range(len(boxes))],
        "categories": [{"id": k} for k in range(num_classes)], "annotations": annotations}
    ground_truth.createIndex()
    evaluator = cocoeval_lib.COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [T, R, K] at area all, 100 dets
  per_class = [precision[:, :, k].mean() if (precision[:, :, k] > -1).all() else np.nan
               for k in range(num_classes)]
  return evaluator.stats[:3], per_class


def prediction_sets(num_images=24, max_boxes=5, num_classes=3, seed=0):
  """Ground truth and three prediction sets: perfect, shuffled scores, random."""
  rng = np.random.default_rng(seed)
  gt_boxes = random_boxes(rng, (num_images, max_boxes))
  gt_classes = rng.integers(0, num_classes, (num_images, max_boxes)).astype(np.int32)
  gt_valid = rng.uniform(size=(num_images, max_boxes)) < 0.7
  gt_valid[0] = False  # an image without objects
  perfect = {"boxes": gt_boxes, "classes": gt_classes, "valid": gt_valid,
             "scores": rng.uniform(0.5, 1, gt_valid.shape).astype(np.float32)}
  # Jittered copies (IoUs spread over the thresholds), duplicates and false positives, with
  # scores that do not follow the quality of the boxes.
  jitter = rng.normal(0, 0.04, gt_boxes.shape).astype(np.float32)
  jittered = [ordered_corners(gt_boxes + jitter), ordered_corners(gt_boxes + 2 * jitter[::-1])]
  shuffled = {
      "boxes": np.concatenate(jittered + [random_boxes(rng, (num_images, 4))], 1),
      "classes": np.concatenate([gt_classes, gt_classes,
                                 rng.integers(0, num_classes, (num_images, 4))], 1),
      "valid": np.concatenate([gt_valid, gt_valid, np.ones((num_images, 4), bool)], 1)}
  shuffled["scores"] = rng.permutation(np.linspace(0.01, 1, shuffled["valid"].size)).reshape(
      shuffled["valid"].shape).astype(np.float32)
  random = {"boxes": random_boxes(rng, (num_images, 8), min_size=0.4),
            "classes": rng.integers(0, num_classes, (num_images, 8)).astype(np.int32),
            "scores": rng.uniform(size=(num_images, 8)).astype(np.float32),
            "valid": rng.uniform(size=(num_images, 8)) < 0.9}
  return (gt_boxes, gt_classes, gt_valid), {"perfect": perfect, "shuffled": shuffled,
                                            "random": random}


@pytest.mark.parametrize("which", ["perfect", "shuffled", "random"])
def test_coco_map_equals_pycocotools(which):
  (boxes, classes, valid), sets = prediction_sets()
  predictions = sets[which]
  ours = detection_metrics(predictions, boxes, classes, valid, num_classes=3)
  reference, reference_per_class = coco_eval(predictions, boxes, classes, valid, num_classes=3)
  summary = [ours["coco_map"], ours["coco_map50"], ours["coco_map75"]]
  np.testing.assert_allclose(summary, reference, rtol=0, atol=1e-6)
  np.testing.assert_allclose(summary, reference, rtol=1e-9)  # the random set's AP is small
  np.testing.assert_allclose(ours["coco_ap_per_class"], reference_per_class, rtol=1e-9)
  if which == "perfect":
    assert ours["coco_map"] == pytest.approx(1) and ours["voc_map50"] == pytest.approx(1)
  else:
    assert 0 < ours["coco_map"] < 0.9


def test_voc_ap_by_hand_and_voc_vs_coco_matching():
  # Image 0 holds A and B (B inside A), image 1 holds C; one class. Detections by score:
  # A exactly (TP); a near copy of A (IoU .95 with A, .79 with B): VOC counts it false since
  # its best box A is taken, COCO matches it to B up to t = .75; C exactly (TP).
  a, b, c = [0, 0, 0.4, 0.4], [0, 0, 0.4, 0.3], [0.5, 0.5, 0.9, 0.9]
  boxes = np.array([[a, b], [c, c]], np.float32)
  classes = np.zeros((2, 2), np.int32)
  valid = np.array([[True, True], [True, False]])
  predictions = {"boxes": np.array([[a, [0, 0, 0.4, 0.38]], [c, c]], np.float32),
                 "scores": np.array([[0.9, 0.8], [0.7, 0]], np.float32),
                 "classes": classes, "valid": np.array([[True, True], [True, False]])}
  results = detection_metrics(predictions, boxes, classes, valid, num_classes=2)
  # Recall 1/3, 1/3, 2/3 and precision 1, 1/2, 2/3 after each detection:
  # all-point = 1/3 * 1 + 1/3 * 2/3 = 5/9; 11-point = (4 * 1 + 3 * 2/3) / 11 = 6/11.
  assert results["voc_map50"] == pytest.approx(5 / 9)
  assert results["voc07_map50"] == pytest.approx(6 / 11)
  assert results["voc_ap50_per_class"][0] == pytest.approx(5 / 9)
  assert np.isnan(results["voc_ap50_per_class"][1])  # no ground truth for class 1
  assert results["num_gt"] == 3 and results["num_predictions"] == 3
  np.testing.assert_allclose([results["coco_map"], results["coco_map50"], results["coco_map75"]],
                             coco_eval(predictions, boxes, classes, valid, 2)[0], atol=1e-6)
  assert results["coco_map50"] == pytest.approx(1, abs=1e-6)  # 3 of 3 matched at t = .5
  assert voc_average_precision([1 / 3, 1 / 3, 2 / 3], [1, 0.5, 2 / 3]) == pytest.approx(5 / 9)


def test_collector_skips_padding_rows_and_checks_shapes():
  (boxes, classes, valid), sets = prediction_sets(num_images=6)
  collector = DetectionCollector()
  mask = np.array([1, 1, 1, 1, 0, 0])
  collector.add(sets["shuffled"], boxes, classes, valid, mask)
  expected = detection_metrics({k: v[:4] for k, v in sets["shuffled"].items()}, boxes[:4],
                               classes[:4], valid[:4], num_classes=3)
  results = collector.compute(3)
  assert len(collector) == 4 and results.keys() == expected.keys()
  for key, value in expected.items():
    np.testing.assert_allclose(results[key], value, rtol=1e-12)
  with pytest.raises(ShapeError, match=r"\[B, D, 4\]"):
    collector.add(sets["shuffled"], boxes[..., :2], classes, valid)
