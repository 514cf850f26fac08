"""The YOLO-style detector: output shapes, target encoding, the loss at a perfect prediction,
decoding back to the ground truth, and a short training run on generated scenes (with
finite gradients that reach every parameter)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.errors import ConfigError
from cnn_jax.metrics.detection import detection_metrics
from cnn_jax.models import create, detector

NUM_CLASSES = 2
KEY = jax.random.key(0, impl="rbg")  # compiles much faster than threefry on CPU


def squares(rng, n, size=32, max_objects=2):
  """Noise scenes with 1..max_objects filled squares; the class is the square's colour
  (red or green). Returns images ``[n, size, size, 3]`` and padded boxes, classes, valid."""
  images = rng.uniform(0, 0.5, (n, size, size, 3)).astype(np.float32)
  boxes = np.zeros((n, max_objects, 4), np.float32)
  classes = np.zeros((n, max_objects), np.int32)
  valid = np.zeros((n, max_objects), bool)
  for i in range(n):
    for j in range(rng.integers(1, max_objects + 1)):
      side = rng.integers(size // 4, size // 2 + 1)
      y, x = rng.integers(0, size - side + 1, 2)
      classes[i, j] = rng.integers(NUM_CLASSES)
      images[i, y:y + side, x:x + side] = 0
      images[i, y:y + side, x:x + side, classes[i, j]] = 1
      boxes[i, j] = np.array([y, x, y + side, x + side]) / size
      valid[i, j] = True
  return images, boxes, classes, valid


def perfect_raw(boxes, classes, valid, grid_size, num_boxes=2):
  """Raw outputs whose first box in every object cell is the object, with certainty."""
  target = detector.encode_targets(boxes, classes, valid, grid_size, NUM_CLASSES)
  has_object = target["object"][..., None] > 0
  coords = jax.scipy.special.logit(jnp.clip(target["coords"], 1e-4, 1 - 1e-4))
  first = jnp.concatenate([coords, jnp.where(has_object, 20.0, -20.0)], -1)
  others = jnp.concatenate([coords, jnp.full_like(coords[..., :1], -20.0)], -1)
  return jnp.concatenate([first] + [others] * (num_boxes - 1) +
                         [20.0 * target["class_probs"]], -1)


@pytest.mark.parametrize("name", ["yolo_simple", "yolo_cifar_resnet20"])
def test_output_shapes(name):
  model = create(name, num_classes=NUM_CLASSES, grid_size=8, num_boxes=3)
  x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  variables = jax.eval_shape(model.init, KEY, x)
  raw, features = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
  assert raw.shape == (2, 8, 8, 5 * 3 + NUM_CLASSES) and raw.dtype == jnp.float32
  assert features["pre_logits"].shape == (2, 128) and "stage1" in features
  detections = jax.eval_shape(lambda r: detector.detect(r, num_boxes=3, max_detections=7), raw)
  assert detections["boxes"].shape == (2, 7, 4) and detections["valid"].shape == (2, 7)


def test_encode_targets_puts_each_box_in_its_centre_cell():
  boxes = jnp.array([[[0.1, 0.1, 0.4, 0.3], [0.2, 0.15, 0.35, 0.25], [0.5, 0.5, 0.9, 0.8]]])
  classes, valid = jnp.array([[0, 1, 1]]), jnp.array([[True, True, False]])
  target = detector.encode_targets(boxes, classes, valid, 4, NUM_CLASSES)
  # Both real centres, (.25, .2) and (.275, .2), fall in cell (1, 0); the larger box wins and
  # the invalid third box is ignored.
  assert np.argwhere(np.asarray(target["object"][0])).tolist() == [[1, 0]]
  np.testing.assert_allclose(target["boxes"][0, 1, 0], boxes[0, 0])
  np.testing.assert_allclose(target["coords"][0, 1, 0], [0.8, 0.0, 0.2**0.5, 0.3**0.5],
                             atol=1e-6)
  np.testing.assert_array_equal(target["class_probs"][0, 1, 0], [1, 0])
  assert float(jnp.abs(target["coords"]).sum() - jnp.abs(target["coords"][0, 1, 0]).sum()) == 0


def test_loss_is_near_zero_for_a_perfect_prediction_and_decodes_to_the_truth():
  _, boxes, classes, valid = squares(np.random.default_rng(0), 6)
  raw = jax.jit(perfect_raw, static_argnums=3)(boxes, classes, valid, 4)
  loss = jax.jit(detector.yolo_loss)(raw, boxes, classes, valid)
  assert loss.shape == (6,) and float(loss.max()) < 1e-3
  noisy = raw + np.random.default_rng(0).normal(size=raw.shape)
  assert float(detector.yolo_loss(noisy, boxes, classes, valid).min()) > 0.1
  # Decoding plus NMS gives the ground truth back: every AP is 1.
  predictions = jax.jit(lambda r: detector.detect(r, max_detections=10))(raw)
  results = detection_metrics(predictions, boxes, classes, valid, num_classes=NUM_CLASSES)
  assert results["voc_map50"] == pytest.approx(1) and results["coco_map"] == pytest.approx(1)
  assert int(predictions["valid"].sum()) == int(valid.sum())


def test_bad_options_raise_config_errors():
  with pytest.raises(ConfigError, match="backbone"):
    detector.YoloDetector(backbone="vgg").init(KEY, jnp.zeros((1, 32, 32, 3)))
  raw = jnp.zeros((1, 4, 4, 5 * 2 + NUM_CLASSES))
  with pytest.raises(ConfigError, match="num_boxes"):
    detector.yolo_loss(raw, jnp.zeros((1, 1, 4)), jnp.zeros((1, 1), int),
                       jnp.ones((1, 1), bool), num_boxes=3)


def test_short_training_learns_to_detect_squares():
  """Plain optax on 512 scenes: mAP@0.5 goes from about 0 to well above 0.6 in 120 steps."""
  rng = np.random.default_rng(0)
  train, test = squares(rng, 512), squares(rng, 128)
  model = create("yolo_simple", num_classes=NUM_CLASSES, grid_size=4, width=8, head_width=32)
  variables = jax.jit(model.init)(KEY, train[0][:2])
  tx = optax.adam(3e-3)

  @jax.jit
  def step(variables, opt_state, images, boxes, classes, valid):
    def loss_fn(params):
      (raw, _), updates = model.apply({**variables, "params": params}, images, train=True,
                                      mutable=["batch_stats"])
      return detector.yolo_loss(raw, boxes, classes, valid).mean(), updates

    (_, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    changes, opt_state = tx.update(grads, opt_state)
    reached = jax.tree.map(lambda g: jnp.all(jnp.isfinite(g)) & jnp.any(g != 0), grads)
    return ({"params": optax.apply_updates(variables["params"], changes), **updates}, opt_state,
            reached)

  @jax.jit
  def predict(variables):
    raw, _ = model.apply(variables, test[0])
    return detector.detect(raw, max_detections=20)

  before = detection_metrics(predict(variables), *test[1:], num_classes=NUM_CLASSES)
  opt_state = tx.init(variables["params"])
  for i in range(120):
    batch = rng.integers(0, len(train[0]), 16)
    variables, opt_state, reached = step(variables, opt_state, *(a[batch] for a in train))
    if i == 0:  # gradients are finite and reach every parameter
      assert all(bool(r) for r in jax.tree.leaves(reached))
  after = detection_metrics(predict(variables), *test[1:], num_classes=NUM_CLASSES)
  assert before["voc_map50"] < 0.1 and after["voc_map50"] > 0.6, (before, after)
  assert after["coco_map"] > 0.2


def test_box_figure_is_written_and_checks_shapes(tmp_path):
  from matplotlib.image import imread

  from cnn_jax.errors import ShapeError
  from cnn_jax.figures.detection import plot_detections
  images, boxes, classes, valid = squares(np.random.default_rng(2), 3)
  predictions = {"boxes": boxes, "classes": classes, "valid": valid,
                 "scores": np.where(valid, 0.9, 0.0)}
  path = plot_detections(images, predictions, str(tmp_path / "boxes.png"), boxes=boxes,
                         classes=classes, valid=valid, class_names=["red", "green"])
  assert imread(path).ndim == 3 and imread(path).shape[0] > 100
  grey = plot_detections(images[..., :1], predictions, str(tmp_path / "grey.png"),
                         score_threshold=0.95)  # draws no box
  assert imread(grey).shape == imread(path).shape
  with pytest.raises(ShapeError, match=r"\[N, H, W, C\]"):
    plot_detections(images[0], predictions, str(tmp_path / "bad.png"))
