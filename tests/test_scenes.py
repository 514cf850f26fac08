"""Procedural segmentation / detection scenes: shapes and MNIST digits on CIFAR photos."""

import io

import ml_collections
import numpy as np
import pytest
from PIL import Image

from cnn_jax.data import scenes
from cnn_jax.data.sources import SOURCES
from cnn_jax.errors import DataError

KEYS = {"image": (np.uint8, 4), "mask": (np.int32, 3), "boxes": (np.float32, 3),
        "box_classes": (np.int32, 2), "box_valid": (np.bool_, 2)}


def check_layout(split: dict, num: int, size: int, slots: int, num_classes: int) -> None:
  assert set(split) == set(KEYS)
  for key, (dtype, ndim) in KEYS.items():
    assert split[key].dtype == dtype and split[key].ndim == ndim and len(split[key]) == num
  assert split["image"].shape == (num, size, size, 3)
  assert split["mask"].shape == (num, size, size)
  assert split["boxes"].shape == (num, slots, 4) and split["box_valid"].shape == (num, slots)
  assert split["mask"].min() >= 0 and split["mask"].max() <= num_classes
  valid = split["box_valid"]
  # Real boxes come first; padding rows are zeros.
  assert np.all(np.sort(~valid, axis=1, kind="stable") == ~valid)
  assert not split["boxes"][~valid].any() and not split["box_classes"][~valid].any()
  boxes = split["boxes"][valid]
  assert np.all((0 <= boxes) & (boxes <= 1))
  assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
  assert np.all((split["box_classes"][valid] >= 0) & (split["box_classes"][valid] < num_classes))


def check_masks_agree_with_boxes(split: dict) -> None:
  """Every object pixel lies in a box of its class; every box edge touches its class."""
  size = split["mask"].shape[1]
  for mask, boxes, classes, valid in zip(split["mask"], split["boxes"], split["box_classes"],
                                         split["box_valid"]):
    covered = np.zeros(mask.shape, bool)
    for (y0, x0, y1, x1), c in zip(np.round(boxes[valid] * size).astype(int), classes[valid]):
      inside = mask[y0:y1, x0:x1] == c + 1
      covered[y0:y1, x0:x1] |= inside
      assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
    assert np.array_equal(covered, mask > 0)
    assert set(np.unique(mask[mask > 0]) - 1) == set(classes[valid])


def test_shapes_layout_determinism_and_box_agreement():
  split = scenes.shapes_scenes(40, size=32, seed=5, max_objects=4)
  check_layout(split, 40, 32, 4, len(scenes.SHAPE_NAMES))
  check_masks_agree_with_boxes(split)
  again = scenes.shapes_scenes(40, size=32, seed=5, max_objects=4)
  assert all(np.array_equal(split[k], again[k]) for k in KEYS)
  other = scenes.shapes_scenes(40, size=32, seed=6, max_objects=4)
  assert not np.array_equal(split["mask"], other["mask"])
  # Every shape kind occurs, objects cover a real share, backgrounds are not flat.
  assert set(np.unique(split["mask"])) == set(range(len(scenes.SHAPE_NAMES) + 1))
  assert 0.05 < (split["mask"] > 0).mean() < 0.6
  assert split["image"][split["mask"] == 0].std() > 10


def test_shapes_occlusion_hides_instances_and_later_objects_win():
  # Six big objects in a small image: many are partly or fully hidden.
  split = scenes.shapes_scenes(30, size=24, seed=1, max_objects=6, min_objects=6,
                               radius_range=(0.3, 0.45))
  check_layout(split, 30, 24, 6, len(scenes.SHAPE_NAMES))
  check_masks_agree_with_boxes(split)
  assert split["box_valid"].sum() < 30 * 6  # some instances fully occluded -> no box
  assert split["box_valid"][:, 0].all()  # the object drawn last is never hidden
  # A single circle: its box is the circle's extent (up to a pixel) and the mask a disk.
  one = scenes.shapes_scenes(1, size=64, seed=0, max_objects=1, shapes=("circle",),
                             radius_range=(0.2, 0.2))
  y0, x0, y1, x1 = one["boxes"][0, 0] * 64
  assert abs((y1 - y0) - 2 * 0.2 * 64) <= 1.5 and abs((x1 - x0) - 2 * 0.2 * 64) <= 1.5
  area = (one["mask"][0] == 1).sum()
  assert abs(area - np.pi * (0.2 * 64) ** 2) < 0.05 * area


def test_shapes_bad_arguments():
  with pytest.raises(DataError, match="unknown shapes"):
    scenes.shapes_scenes(2, shapes=("hexagon",))
  with pytest.raises(DataError, match="min objects"):
    scenes.shapes_scenes(2, max_objects=2, min_objects=3)


def fake_digits(num: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """28x28 "digits": a filled bar whose length encodes the label (enough to test pasting)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(10, size=num)
  images = np.zeros((num, 28, 28, 1), np.uint8)
  for image, label in zip(images, labels):
    image[4:24, 12:16] = 255
    image[4:6, 6:6 + 2 * label + 2] = 255
  return images, labels


def test_mnist_scenes_layout_and_classes():
  digits, labels = fake_digits(50)
  photos = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
  split = scenes.mnist_scenes(digits, labels, photos, 30, size=48, seed=2, max_digits=3)
  check_layout(split, 30, 48, 3, 10)
  check_masks_agree_with_boxes(split)
  again = scenes.mnist_scenes(digits, labels, photos, 30, size=48, seed=2, max_digits=3)
  assert all(np.array_equal(split[k], again[k]) for k in KEYS)
  # The strokes were pasted: object pixels differ from the photo behind them on average.
  assert (split["mask"] > 0).mean() > 0.02
  with pytest.raises(DataError, match="one label each"):
    scenes.mnist_scenes(digits, labels[:3], photos, 2)


def test_mnist_scenes_on_real_mnist(shared_data):
  with np.load(f"{shared_data}/mnist.npz") as d:
    digits, labels = d["x_test"][:300], d["y_test"][:300]
  photos = np.full((4, 32, 32, 3), 90, np.uint8)
  split = scenes.mnist_scenes(digits, labels, photos, 20, size=64, seed=0, max_digits=1,
                              min_digits=1)
  check_masks_agree_with_boxes(split)
  # One digit per scene: the mask class is the picked digit + 1, the box class the digit.
  for mask, classes in zip(split["mask"], split["box_classes"]):
    assert set(np.unique(mask)) == {0, classes[0] + 1}
  heights = (split["boxes"][:, 0, 2] - split["boxes"][:, 0, 0]) * 64
  assert np.all((heights > 10) & (heights < 0.6 * 64))  # digits fill ~70% of their 28x28


def write_sources(root) -> None:
  """A 12-digit mnist.npz and an 8-photo cifar10_jpeg.npz in the shared files' formats."""
  digits, labels = fake_digits(12)
  np.savez(root / "mnist.npz", x_train=digits, y_train=labels, x_test=digits[:6],
           y_test=labels[:6])
  rng = np.random.default_rng(0)
  arrays = {}
  for split, count in (("train", 5), ("test", 3)):
    jpegs = []
    for _ in range(count):
      buffer = io.BytesIO()
      Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG")
      jpegs.append(np.frombuffer(buffer.getvalue(), np.uint8))
    arrays[f"{split}_jpeg"] = np.concatenate(jpegs)
    arrays[f"{split}_offsets"] = np.cumsum([0] + [len(j) for j in jpegs])
    arrays[f"y_{split}"] = np.zeros(count, np.uint8)
  np.savez(root / "cifar10_jpeg.npz", **arrays)


def test_registered_sources(tmp_path):
  cfg = ml_collections.ConfigDict({"name": "shapes", "num_train": 6, "num_test": 4,
                                   "image_size": 32, "max_objects": 3})
  data = SOURCES.get("shapes")(cfg)
  assert data.class_names == ["background", *scenes.SHAPE_NAMES]
  check_layout(data.train, 6, 32, 3, 4)
  check_layout(data.test, 4, 32, 3, 4)
  assert not np.array_equal(data.train["image"][:4], data.test["image"])

  write_sources(tmp_path)
  cfg = ml_collections.ConfigDict({"name": "mnist_scenes", "data_dir": str(tmp_path),
                                   "cache_dir": str(tmp_path / "cache"), "num_train": 5,
                                   "num_test": 3, "image_size": 32, "max_digits": 2})
  data = SOURCES.get("mnist_scenes")(cfg)
  assert data.class_names == ["background", *map(str, range(10))]
  check_layout(data.train, 5, 32, 2, 10)
  check_layout(data.test, 3, 32, 2, 10)
  check_masks_agree_with_boxes(data.test)
  cfg.data_dir = str(tmp_path / "nowhere")
  with pytest.raises(DataError, match="not found"):
    SOURCES.get("mnist_scenes")(cfg)
