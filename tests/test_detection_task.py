"""The detection task: one CI-sized shapes detector run (shared by the tests) lowers its loss,
reports VOC and COCO mAPs equal to pycocotools on its own predictions, draws its boxes
figure and the predict command's boxes; the device-side binned mAP equals the host mAP;
bad setups fail in one line."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from cnn_jax import config as config_lib
from cnn_jax.data import PreparedData
from cnn_jax.errors import ConfigError
from cnn_jax.metrics.detection import detection_metrics
from cnn_jax.tasks import get_task
from cnn_jax.tasks.detection import binned_map, binned_matches
from conftest import REPO
from test_detection_metrics import coco_eval, prediction_sets

CI_EXPERIMENT = os.path.join(REPO, "experiments", "shapes_detector.py:ci")


def ci_config(**overrides):
  config = config_lib.load_config(CI_EXPERIMENT)
  config.train.num_devices = 1
  config.train.progress = False
  config_lib.apply_overrides(config, [f"{k}={v}" for k, v in overrides.items()])
  return config


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
  """The trained CI run, evaluated on its test split as ``python -m cnn_jax train`` does:
  ``(workdir, test results, (session, final state))``."""
  from cnn_jax.evaluate.run import evaluate_and_report
  from cnn_jax.train.loop import fit
  workdir = str(tmp_path_factory.mktemp("detector") / "run")
  result = fit(ci_config(), workdir)
  test = evaluate_and_report(workdir, result.session, result.state, "test",
                             int(result.state.step), result.best_step)
  return workdir, test, (result.session, result.state)


def test_loss_falls_and_maps_are_fractions(ci_run):
  workdir, test, _ = ci_run
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    history = [json.loads(line) for line in f]
  assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
  assert history[-1]["val_loss"] < history[0]["val_loss"]
  assert all(0 <= row["val_map50"] <= 1 for row in history)
  for key in ("map50", "voc07_map50", "coco_map", "coco_map50", "coco_map75"):
    assert 0 <= test[key] <= 1, key
  assert test["coco_map"] <= test["coco_map50"] + 1e-9  # AP falls as the IoU threshold rises
  assert test["num_images"] == 64 and test["num_gt"] > 64
  assert len(test["voc_ap50_per_class"]) == 4
  assert test["box_class_names"] == ["circle", "square", "triangle", "star"]
  # The per-epoch (score-binned, device-side) mAP is the host mAP up to ties within a bin.
  assert test["binned_map50"] == pytest.approx(test["map50"], abs=0.01)


def test_run_maps_equal_pycocotools_on_its_predictions(ci_run):
  _, test, (session, state) = ci_run
  results, outputs = session.task.evaluate(session.evaluator, state, session.data, "test")
  assert results["coco_map"] == pytest.approx(test["coco_map"], abs=1e-12)
  arrays = session.data.splits["test"]
  rows = outputs["index"]
  predictions = {k: outputs[k] for k in ("boxes", "scores", "classes", "valid")}
  assert predictions["boxes"].shape == (64, 100, 4) and predictions["valid"].any()
  reference, _ = coco_eval(predictions, arrays["boxes"][rows], arrays["box_classes"][rows],
                           arrays["box_valid"][rows], num_classes=4)
  np.testing.assert_allclose([results["coco_map"], results["coco_map50"],
                              results["coco_map75"]], reference, rtol=0, atol=1e-6)


def test_eval_figure_and_predict_draw_boxes(ci_run, tmp_path):
  """The predict command's steps (reading and resizing the file, ``predict_image``) on the
  fixture's state; the command itself is tested with a segmentation run."""
  from cnn_jax.predict import read_image
  workdir, _, (session, state) = ci_run
  boxes_png = os.path.join(workdir, "eval", "test_boxes.png")
  assert os.path.getsize(boxes_png) > 10_000
  image_path, out_path = str(tmp_path / "scene.jpg"), str(tmp_path / "boxes.png")
  scene = (255 * session.data.splits["test"]["image"][0]).astype(np.uint8)
  Image.fromarray(scene).resize((50, 40)).save(image_path)  # at another size
  image = read_image(image_path, session.data.image_shape)
  assert session.task.predict_image(state, image, out_path) == out_path
  with Image.open(out_path) as drawn:
    assert drawn.format == "PNG" and drawn.width > 200
  found = session.task.predict_boxes(state, session.data.splits["test"]["image"][:2])
  scores = found["scores"][found["valid"]]
  assert len(scores) and np.all(np.diff(found["scores"][0][found["valid"][0]]) <= 0)
  assert np.all((found["boxes"] >= 0) & (found["boxes"] <= 1))


@pytest.mark.parametrize("which", ["perfect", "shuffled", "random"])
def test_binned_map_equals_host_voc_map(which):
  (boxes, classes, valid), sets = prediction_sets()
  predictions = sets[which]
  order = np.argsort(-np.where(predictions["valid"], predictions["scores"], -1), axis=1,
                     kind="stable")  # by decreasing score, as NMS returns them
  ranked = {k: np.take_along_axis(v, order[..., None] if v.ndim == 3 else order, axis=1)
            for k, v in predictions.items()}
  counts = jax.jit(binned_matches, static_argnums=(4, 5))(ranked, boxes, classes, valid, 3,
                                                          10**6)
  expected = detection_metrics(predictions, boxes, classes, valid, num_classes=3)["voc_map50"]
  assert binned_map(**counts) == pytest.approx(expected, abs=1e-9)
  assert counts["num_gt"].sum() == valid.sum()


def test_setups_without_boxes_or_detector_fail_in_one_line():
  data = PreparedData.synthetic((32, 32, 3), ["background", "circle"],
                                mask=np.zeros((1, 32, 32), np.int32))
  with pytest.raises(ConfigError, match="needs a dataset with boxes"):
    get_task(ci_config(), data)
  with_boxes = PreparedData.synthetic(
      (32, 32, 3), ["background", "circle"], boxes=np.zeros((1, 2, 4), np.float32),
      box_classes=np.zeros((1, 2), np.int32), box_valid=np.zeros((1, 2), bool))
  config = ci_config()
  config.model = ml_collections.ConfigDict({"name": "unet", "depth": 1, "base_width": 4})
  with pytest.raises(ConfigError, match="needs a detector model"):
    get_task(config, with_boxes)
  config = ci_config()
  config.task.nms_iuo = 0.4
  with pytest.raises(ConfigError, match="has no option task.nms_iuo. Did you mean task.nms_iou"):
    get_task(config, with_boxes)
