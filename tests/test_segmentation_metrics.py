"""Segmentation metrics (checked against scikit-learn) and losses (against NumPy)."""

import jax
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, jaccard_score

from cnn_jax.errors import DataError, ShapeError
from cnn_jax.metrics import segmentation as seg

K, IGNORE = 5, 255
# Jitted once per input signature: op-by-op dispatch would cost more than the whole test.
update = jax.jit(seg.update, static_argnames="ignore_label")


def random_batches(seed: int, batches: int = 3, size: int = 6):
  """Batches of labels (with ignored pixels, class 4 never present) and noisy predictions."""
  rng = np.random.default_rng(seed)
  for _ in range(batches):
    labels = rng.integers(0, K - 1, (4, size, size))
    labels[rng.random(labels.shape) < 0.1] = IGNORE
    predictions = np.where(rng.random(labels.shape) < 0.6, labels, rng.integers(0, K, labels.shape))
    predictions = np.where(predictions == IGNORE, 0, predictions)
    logits = jax.nn.one_hot(predictions, K) + 0.01 * rng.random((*labels.shape, K))
    valid = np.array([True, True, True, False])
    yield logits, labels, valid, rng.random(4).astype(np.float32)


def test_metrics_match_sklearn_on_kept_pixels():
  stats = seg.SegmentationStats.empty(K)
  kept_true, kept_pred, losses = [], [], []
  for logits, labels, valid, loss in random_batches(0):
    stats = update(stats, logits, labels, valid, loss, ignore_label=IGNORE)
    keep = valid[:, None, None] & (labels != IGNORE)
    kept_true.append(labels[keep])
    kept_pred.append(np.argmax(logits, -1)[keep])
    losses.append(loss[valid])
  y_true, y_pred = np.concatenate(kept_true), np.concatenate(kept_pred)
  out = seg.compute(stats)

  np.testing.assert_array_equal(out["confusion_matrix"],
                                confusion_matrix(y_true, y_pred, labels=range(K)))
  assert out["count"] == 9 and out["loss"] == pytest.approx(np.concatenate(losses).mean())
  assert out["pixel_accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
  # Class 4 is only predicted (IoU 0), none is absent from both -> all five count.
  present = sorted(set(y_true) | set(y_pred))
  assert present == list(range(K)) and out["num_classes_present"] == K
  np.testing.assert_allclose(out["per_class"]["iou"],
                             jaccard_score(y_true, y_pred, labels=present, average=None))
  assert out["mean_iou"] == pytest.approx(jaccard_score(y_true, y_pred, average="macro"))
  np.testing.assert_allclose(out["per_class"]["dice"],
                             f1_score(y_true, y_pred, labels=present, average=None))
  assert out["mean_dice"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
  support = np.bincount(y_true, minlength=K)
  assert out["frequency_weighted_iou"] == pytest.approx(
      np.sum(support * np.asarray(out["per_class"]["iou"])) / support.sum())


def test_absent_class_is_nan_and_left_out_of_the_means():
  labels = np.array([[[0, 1], [1, 2]]])
  predictions = np.array([[[0, 1], [2, 2]]])
  stats = update(seg.SegmentationStats.empty(4), predictions, labels, np.array([True]),
                 np.zeros(1))
  out = seg.compute(stats)
  assert np.isnan(out["per_class"]["iou"][3]) and np.isnan(out["per_class"]["dice"][3])
  assert out["per_class"]["iou"][:3] == [1.0, 0.5, 0.5]
  assert out["mean_iou"] == pytest.approx(2 / 3)
  assert out["mean_iou"] == pytest.approx(jaccard_score(labels.ravel(), predictions.ravel(),
                                                        average="macro"))
  assert out["mean_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)


def test_merge_bad_labels_and_shapes():
  batches = list(random_batches(1, batches=2))
  one = [update(seg.SegmentationStats.empty(K), *b, ignore_label=IGNORE) for b in batches]
  both = seg.SegmentationStats.empty(K)
  for b in batches:
    both = update(both, *b, ignore_label=IGNORE)
  merged = seg.merge(*one)
  assert seg.compute(merged) == seg.compute(both)
  logits, labels, valid, loss = batches[0]
  # Without the ignore label, 255 is an out-of-range class: compute() says so.
  with pytest.raises(DataError, match="outside"):
    seg.compute(update(seg.SegmentationStats.empty(K), logits, labels, valid, loss))
  with pytest.raises(ShapeError, match="Crop the labels"):
    seg.update(seg.SegmentationStats.empty(K), logits[:, :4, :4], labels, valid, loss)
  with pytest.raises(DataError, match="at least 2 classes"):
    seg.SegmentationStats.empty(1)


def reference_cross_entropy(logits, labels, weights, ignore):
  logits = np.asarray(logits, np.float64)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  out = []
  for lp, y in zip(log_probs, labels):
    keep = y != ignore
    w = weights[y[keep]]
    out.append(-(w * lp[keep, y[keep]]).sum() / w.sum())
  return np.array(out)


def test_cross_entropy_with_class_weights_and_ignore_label():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 5, K)).astype(np.float32)
  labels = rng.integers(0, K, (3, 4, 5))
  labels[0, :2] = IGNORE
  weights = np.array([0.2, 1.0, 2.0, 0.5, 3.0])
  got = jax.jit(seg.pixel_cross_entropy, static_argnums=3)(logits, labels, weights, IGNORE)
  np.testing.assert_allclose(got, reference_cross_entropy(logits, labels, weights, IGNORE),
                             rtol=1e-5)
  # Unweighted: the plain per-image mean; a fully ignored image costs 0.
  labels[2] = IGNORE
  plain = jax.jit(seg.pixel_cross_entropy, static_argnums=3)(logits, labels, None, IGNORE)
  np.testing.assert_allclose(plain[:2], reference_cross_entropy(logits[:2], labels[:2],
                                                                np.ones(K), IGNORE), rtol=1e-5)
  assert float(plain[2]) == 0.0


def test_soft_dice_loss_and_sum():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 3, (2, 6, 6))
  logits = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
  weights = np.array([0.0, 1.0, 3.0])

  @jax.jit
  def losses(logits, labels):  # one compilation for every loss value checked here
    return {"perfect": seg.soft_dice_loss(50.0 * jax.nn.one_hot(labels, 3), labels),
            "dice": seg.soft_dice_loss(logits, labels),
            "weighted": seg.soft_dice_loss(logits, labels, weights),
            "ce": seg.pixel_cross_entropy(logits, labels),
            "total": seg.cross_entropy_dice_loss(logits, labels, cross_entropy_weight=0.5,
                                                 dice_weight=2.0),
            "grad": jax.grad(lambda x: seg.cross_entropy_dice_loss(x, labels).sum())(logits)}

  got = losses(logits, labels)
  assert np.allclose(got["perfect"], 0.0, atol=1e-6)
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  truth = np.eye(3)[labels]
  dice = (2 * (probs * truth).sum((1, 2)) + 1) / (probs.sum((1, 2)) + truth.sum((1, 2)) + 1)
  np.testing.assert_allclose(got["dice"], 1 - dice.mean(-1), rtol=1e-5)
  np.testing.assert_allclose(got["weighted"], 1 - (dice * weights).sum(-1) / 4, rtol=1e-5)
  np.testing.assert_allclose(got["total"], 0.5 * got["ce"] + 2.0 * got["dice"], rtol=1e-6)
  assert np.all(np.isfinite(got["grad"])) and np.abs(got["grad"]).sum() > 0
  with pytest.raises(ShapeError, match="logits"):
    seg.soft_dice_loss(logits[:, :3], labels)


def test_figures(tmp_path):
  from cnn_jax.figures import segmentation as plots
  image = np.full((4, 4, 3), 200, np.uint8)
  mask = np.array([[0, 1, 2, IGNORE]] * 4)
  shown = plots.overlay(image, mask, 3, alpha=1.0, ignore_label=IGNORE)
  colours = plots.class_colours(3)
  np.testing.assert_allclose(shown[0, 1], colours[1])
  np.testing.assert_allclose(shown[0, 2], colours[2])
  np.testing.assert_allclose(shown[0, 3], plots.IGNORE_RGB)
  np.testing.assert_allclose(shown[0, 0], 0.7 * 200 / 255)  # background: the dimmed grey image
  images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
  masks = np.zeros((2, 8, 8), int)
  masks[:, 2:5, 3:6] = 1
  path = plots.plot_segmentation_examples(
      images, masks, str(tmp_path / "examples.png"), predictions=masks[::-1],
      class_names=["background", "square"], boxes=np.array([[[0.25, 0.375, 0.625, 0.75]]] * 2))
  bars = plots.plot_class_iou([0.9, 0.5, float("nan")], str(tmp_path / "iou.png"),
                              class_names=["background", "a", "b"])
  assert all((tmp_path / name).stat().st_size > 1000 for name in ("examples.png", "iou.png"))
  assert path.endswith("examples.png") and bars.endswith("iou.png")
  with pytest.raises(ShapeError, match="masks"):
    plots.plot_segmentation_examples(images, masks[:, :4], str(tmp_path / "bad.png"))
