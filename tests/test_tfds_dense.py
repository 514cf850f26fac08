"""The tfds source maps oxford_iiit_pet's trimaps to masks and voc's objects to padded boxes
(ArrayData's keys), on mocked data sources with known examples."""

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnn_jax.data import sources
from cnn_jax.errors import DataError


def _config(tmp_path, name, **extra):
  return ml_collections.ConfigDict({"name": "tfds", "tfds_name": name, "image_size": 16,
                                    "data_dir": str(tmp_path / "tfds"), **extra})


def _pet(height, width, split_row):
  """A pet image whose trimap is pet (1) above ``split_row``, outline (3) on it and the row
  below, background (2) further down."""
  trimap = np.full((height, width, 1), 2, np.uint8)
  trimap[:split_row] = 1
  trimap[split_row:split_row + 2] = 3
  return {"image": np.full((height, width, 3), 200, np.uint8), "segmentation_mask": trimap,
          "label": 0}


def _voc(num_objects):
  """A 30x40 image with ``num_objects`` boxes of classes 0, 1, ..."""
  boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.5, 1.0, 1.0], [0.3, 0.3, 0.4, 0.4]],
                   np.float32)[:num_objects]
  return {"image": np.zeros((30, 40, 3), np.uint8),
          "objects": {"bbox": boxes, "label": np.arange(num_objects)}}


def _mocked(examples: dict):
  """``tfds.testing.mock_data`` serving ``examples[split]`` as each split's data source."""
  return tfds.testing.mock_data(as_data_source_fn=lambda builder, split, **_: examples[split])


def test_oxford_pets_trimaps_become_masks(tmp_path):
  examples = {"train": [_pet(32, 48, 16), _pet(20, 20, 10)], "test": [_pet(64, 32, 32)]}
  with _mocked(examples):
    data = sources.load(_config(tmp_path, "oxford_iiit_pet"))
  assert data.class_names == ["background", "pet", "outline"]
  assert data.train["image"].shape == (2, 16, 16, 3) and data.test["mask"].shape == (1, 16, 16)
  mask = data.train["mask"][0]
  assert mask.dtype == np.int32 and set(np.unique(mask)) == {0, 1, 2}
  assert (mask[:7] == 1).all() and (mask[9:] == 0).all()  # pet on top, background below


def test_oxford_pets_needs_an_image_size_and_valid_trimaps(tmp_path):
  with _mocked({"train": [_pet(8, 8, 4)], "test": []}):
    with pytest.raises(DataError, match="set dataset.image_size"):
      sources.load(_config(tmp_path, "oxford_iiit_pet", image_size=0))
  bad = _pet(8, 8, 4)
  bad["segmentation_mask"][0, 0] = 7
  with _mocked({"train": [bad], "test": []}):
    with pytest.raises(DataError, match="trimap values must be 1"):
      sources.load(_config(tmp_path, "oxford_iiit_pet"))


def test_voc_objects_become_padded_boxes(tmp_path):
  examples = {"train": [_voc(2), _voc(0)], "test": [_voc(3)]}
  with _mocked(examples):
    data = sources.load(_config(tmp_path, "voc/2007"))
  assert data.class_names[:3] == ["background", "aeroplane", "bicycle"]
  assert len(data.class_names) == 21
  train, test = data.train, data.test
  assert train["image"].shape == (2, 16, 16, 3)
  assert train["boxes"].shape == (2, 3, 4) and test["boxes"].shape == (1, 3, 4)
  np.testing.assert_array_equal(train["box_valid"], [[True, True, False], [False] * 3])
  np.testing.assert_allclose(train["boxes"][0, 0], [0.1, 0.2, 0.5, 0.6])  # fractions kept
  np.testing.assert_array_equal(test["box_classes"][0], [0, 1, 2])
  assert train["box_classes"].dtype == np.int32 and not train["boxes"][1].any()
