"""The segmentation task: a CI-sized shapes U-Net run learns more than the background-only
baseline; the eval command writes its JSON and figures; predict draws a mask on an image
file; valid-padding logits are matched by cropped masks; bad options fail in one line; FCN's
sub-pixel upsampling equals a transposed convolution."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnn_jax import config as config_lib
from cnn_jax.data import PreparedData
from cnn_jax.errors import CnnJaxError, ConfigError, DataError
from cnn_jax.tasks import get_task
from conftest import REPO

CI_EXPERIMENT = os.path.join(REPO, "experiments", "shapes_unet.py:ci")
CLASSES = ["background", "circle", "square"]


def ci_config(**overrides):
  config = config_lib.load_config(CI_EXPERIMENT)
  config.train.num_devices = 1
  config.train.progress = False
  config_lib.apply_overrides(config, [f"{k}={v}" for k, v in overrides.items()])
  return config


def synthetic_task(config, size: int = 20, mask=None):
  """The task of ``config`` on one synthetic ``size x size`` example with ``mask``."""
  mask = np.zeros((1, size, size), np.int32) if mask is None else mask
  data = PreparedData.synthetic((size, size, 3), CLASSES, mask=mask)
  return get_task(config, data)


def test_ci_run_beats_background_baseline_then_eval_and_predict(tmp_path):
  from cnn_jax.evaluate.run import evaluate_run
  from cnn_jax.experiment import train
  from cnn_jax.main import run
  workdir = str(tmp_path / "run")
  result = train(ci_config(), workdir)
  test = result["test"]
  confusion = np.asarray(test["confusion_matrix"])
  background_share = confusion[0].sum() / confusion.sum()
  # Predicting background everywhere scores pixel accuracy = background share, background
  # IoU = that share and 0 elsewhere, and no foreground pixel right.
  foreground_iou = confusion[1:, 1:].sum() / (confusion.sum() - confusion[0, 0])
  assert test["pixel_accuracy"] > background_share + 0.01
  assert test["miou"] > background_share / len(confusion) + 0.05
  assert foreground_iou > 0.4
  assert len(test["per_class"]["iou"]) == len(confusion) == 5
  # the diagnosis judges the pixel accuracy the run logged
  history = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  evidence = result["diagnosis"].evidence
  assert evidence["final_train_accuracy"] == history[-1]["train_pixel_accuracy"]
  # chance = the training masks' background share, which the trained net beats
  assert background_share - 0.1 < evidence["chance_accuracy"] < test["pixel_accuracy"]

  evaluated = evaluate_run(workdir, split="val")
  with open(evaluated["json_path"]) as f:
    saved = json.load(f)
  assert saved["miou"] == pytest.approx(evaluated["miou"]) and 0 < saved["miou"] <= 1
  assert saved["class_names"][0] == "background"
  for figure in ("val_overlays.png", "val_class_iou.png"):
    assert os.path.getsize(os.path.join(workdir, "eval", figure)) > 1000

  image_path, out_path = str(tmp_path / "scene.jpg"), str(tmp_path / "mask.png")
  scene = np.zeros((48, 40, 3), np.uint8)
  scene[10:30, 8:28] = (250, 40, 40)  # a red square on black, at another size
  Image.fromarray(scene).save(image_path)
  assert run(["predict", "--workdir", workdir, "--image", image_path, "--out", out_path]) == 0
  with Image.open(out_path) as drawn:
    assert drawn.format == "PNG" and drawn.width > 200


def test_valid_padding_logits_get_centre_cropped_masks():
  config = ci_config(**{"model.depth": 1, "model.padding": "valid"})
  mask = np.zeros((1, 20, 20), np.int32)
  mask[0, 8:12, 8:12] = 2  # the 4x4 centre that a depth-1 valid U-Net sees of 20x20
  task = synthetic_task(config, mask=mask)
  import optax
  from cnn_jax.train.state import create_train_state
  networks = task.build_networks(lambda section: optax.sgd(0.1))
  state = jax.jit(lambda: create_train_state(networks, seed=0))()
  images = jnp.zeros((2, 20, 20, 3))
  batch = {"image": images, "mask": jnp.asarray(np.repeat(mask, 2, 0)),
           "valid": jnp.asarray([True, False]), "index": jnp.arange(2, dtype=jnp.int32)}
  stats, _ = jax.jit(task.eval_step)(state, batch)
  assert int(stats.pixel_count) == 16  # one valid example, 4x4 output pixels
  assert np.asarray(stats.confusion)[2].sum() == 16
  _, metrics = jax.jit(task.train_step)(state, batch)
  assert float(metrics["pixel_accuracy"][1]) == 32


@pytest.mark.parametrize("loss", ["cross_entropy", "dice", "cross_entropy+dice"])
def test_losses_with_class_weights_and_ignored_pixels(loss):
  config = ci_config(**{"task.loss": loss, "task.ignore_label": 255,
                        "task.class_weights": "(0.5, 1.0, 2.0)"})
  mask = np.full((1, 4, 4), 255, np.int32)
  mask[0, :2] = 1
  task = synthetic_task(config, size=4, mask=mask)
  masks = jnp.asarray(mask)
  right = jax.nn.one_hot(jnp.where(masks == 255, 0, masks), 3) * 10.0
  wrong = jnp.roll(right, 1, axis=-1)
  low, high = task.pixel_loss(right, masks), task.pixel_loss(wrong, masks)
  assert low.shape == (1,) and float(low[0]) < float(high[0])
  _, metrics = task.loss((right, {}), {"mask": masks}, train=True)
  assert [float(v) for v in metrics["pixel_accuracy"]] == [8.0, 8.0]  # ignored pixels skipped


def test_bad_options_and_data_fail_in_one_line():
  with pytest.raises(ConfigError, match="task.loss must be one of"):
    synthetic_task(ci_config(**{"task.loss": "focal"}))
  with pytest.raises(ConfigError, match="needs 3 non-negative weights"):
    synthetic_task(ci_config(**{"task.class_weights": "(1.0, 2.0)"}))
  with pytest.raises(DataError, match=r"mask values \[7\]"):
    synthetic_task(ci_config(), mask=np.full((1, 20, 20), 7, np.int32))
  with pytest.raises(ConfigError, match="needs a dataset with masks"):
    get_task(ci_config(), PreparedData.synthetic((20, 20, 3), CLASSES))


def test_tasks_without_the_hook_cannot_predict_and_images_are_resized(tmp_path):
  from cnn_jax.predict import read_image
  config = ci_config(**{"task.name": "classification"})
  del config.task.loss, config.task.dice_weight, config.task.class_weights
  del config.task.ignore_label
  task = get_task(config, PreparedData.synthetic((20, 20, 3), CLASSES))
  with pytest.raises(CnnJaxError, match="task 'classification' cannot draw predictions"):
    task.predict_image(None, np.zeros((20, 20, 3)), str(tmp_path / "x.png"))
  path = str(tmp_path / "grey.png")
  Image.fromarray(np.full((30, 50), 255, np.uint8)).save(path)
  rgb = read_image(path, (16, 24, 3))
  assert rgb.shape == (16, 24, 3) and rgb.dtype == np.float32 and rgb.min() == 1.0
  assert read_image(path, (8, 8, 1)).shape == (8, 8, 1)
  with pytest.raises(DataError, match="does not exist"):
    read_image(str(tmp_path / "missing.png"), (8, 8, 3))
  with pytest.raises(DataError, match="cannot read"):
    read_image(__file__, (8, 8, 3))


@pytest.mark.parametrize("experiment", ["shapes_unet.py", "shapes_fcn.py", "shapes_fcn.py:ci",
                                        "mnist_scenes_unet.py", "mnist_scenes_unet.py:ci"])
def test_experiments_are_valid_and_their_models_take_their_images(experiment):
  from cnn_jax.tasks.classification import build_model
  from cnn_jax.train.state import check_input_shape
  config = config_lib.load_config(os.path.join(REPO, "experiments", experiment))
  config_lib.validate(config)
  size = config.dataset.image_size
  num_classes = 11 if config.dataset.name == "mnist_scenes" else 5
  check_input_shape(build_model(config, num_classes=num_classes), ((size, size, 3),),
                    config.model.name)


def test_fcn_upsampling_equals_a_transposed_convolution():
  """FCN's learned upsampling runs in sub-pixel form (a 3x3 convolution and a pixel
  shuffle); with any kernel, borders included, it equals ``nn.ConvTranspose``."""
  import flax.linen as nn
  from cnn_jax.models.fcn import BilinearUpsample, transpose_padding
  x = jax.random.normal(jax.random.key(0), (2, 3, 4, 2))

  @jax.jit
  def both(kernel2, kernel8):
    pairs = []
    for factor, kernel in ((2, kernel2), (8, kernel8)):
      pad = transpose_padding(factor)
      reference = nn.ConvTranspose(2, (2 * factor, 2 * factor), (factor, factor),
                                   padding=((pad, pad), (pad, pad)), use_bias=False)
      pairs.append((BilinearUpsample(factor).apply({"params": {"conv": {"kernel": kernel}}}, x),
                    reference.apply({"params": {"kernel": kernel}}, x)))
    return pairs

  kernels = [jax.random.normal(jax.random.key(f), (2 * f, 2 * f, 2, 2)) for f in (2, 8)]
  for factor, (actual, expected) in zip((2, 8), both(*kernels)):
    assert actual.shape == expected.shape == (2, 3 * factor, 4 * factor, 2)
    np.testing.assert_allclose(actual, expected, atol=1e-5)
