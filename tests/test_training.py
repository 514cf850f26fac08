"""Training features end to end: augmentation with soft labels, on-device data, show-data."""

import os

import numpy as np

from cnn_jax import config as config_lib
from cnn_jax.data.device_data import DeviceBatches
from cnn_jax.train import parallel
from cnn_jax.experiment import train
from conftest import REPO, cli


def _simple_cnn_config(overrides):
  config = config_lib.load_config(os.path.join(REPO, "experiments", "digits_simple_cnn.py"))
  config_lib.apply_overrides(config, ["train.num_devices=1", "train.progress=false",
                                      "train.epochs=2", *overrides])
  return config


def test_mixup_cutmix_and_on_device_data_train(tmp_path):
  config = _simple_cnn_config(["augment.mixup_alpha=0.4", "augment.cutmix_alpha=1.0",
                               "augment.flip=true", "train.on_device_data=true"])
  results = train(config, str(tmp_path))
  assert np.isfinite(results["test"]["loss"])
  assert results["test"]["accuracy"] > 0.25  # 2 epochs of heavy mixing: well above chance (0.1)
  assert os.path.exists(tmp_path / "report.html")


def test_device_batches_resume_at_the_same_batch():
  rng = np.random.default_rng(0)
  images = rng.random((50, 4, 4, 1), np.float32)
  labels = np.arange(50, dtype=np.int32)
  mesh = parallel.make_mesh(2)
  make = lambda: DeviceBatches({"image": images, "label": labels}, batch_size=8,  # noqa: E731
                               seed=3, mesh=mesh)
  full = make()
  seen = [np.asarray(next(full)["label"]) for _ in range(15)]  # crosses two epochs of 6 steps
  for epoch_start in (0, 6):
    assert len(set(np.concatenate(seen[epoch_start:epoch_start + 6]))) == 48  # no repeats
  assert not np.array_equal(seen[0], seen[6])  # a new order every epoch
  resumed = make()
  resumed.set_state({"next_index": 9})
  for k in range(9, 15):
    np.testing.assert_array_equal(np.asarray(next(resumed)["label"]), seen[k])
  assert resumed.get_state() == {"next_index": 15}


def test_show_data_writes_png(tmp_path):
  out = str(tmp_path / "grid.png")
  proc = cli("show-data", "--config", os.path.join(REPO, "experiments", "digits_lenet5.py"),
             "--out", out, "--num-images", "12")
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(out, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_image_folder_experiment_on_real_photos(tmp_path):
  from cnn_jax.data.sample_folder import make_sample_folder
  photos = make_sample_folder(str(tmp_path / "photos"), per_class=40)
  config = config_lib.load_config(os.path.join(REPO, "experiments", "image_folder_cnn.py"))
  config_lib.apply_overrides(config, [f"dataset.directory={photos}", "train.num_devices=1",
                                      "train.progress=false", "train.epochs=4"])
  results = train(config, str(tmp_path / "run"))
  assert results["test"]["count"] == 16  # 20% of 80 photos, stratified
  assert results["test"]["accuracy"] >= 0.75  # china vs flower patches are easy to tell apart
