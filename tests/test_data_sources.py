"""File-format sources: idx, CIFAR python batches, JPEG-CIFAR npz, image folders."""

import gzip
import io
import os
import pickle

import ml_collections
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from cnn_jax.data import image_folder, local_files, sources  # noqa: F401 (registers)
from cnn_jax.errors import ConfigError, DataError

RNG = np.random.default_rng(0)
PHOTOS = load_sample_images().images  # two real 427x640 RGB photos, bundled with sklearn


def cfg(**kw) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(kw)


def patch(h: int, w: int, i: int = 0) -> np.ndarray:
  """A real-looking uint8 [h, w, 3] patch cut from the sample photos."""
  photo = PHOTOS[i % 2]
  y, x = (37 * i) % (photo.shape[0] - h), (53 * i) % (photo.shape[1] - w)
  return photo[y:y + h, x:x + w]


# ----------------------------------------------------------------------------- idx

def write_idx(path: str, array: np.ndarray, gz: bool = False) -> None:
  code = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}[
      array.dtype.str[1:]]
  header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
  with (gzip.open if gz else open)(path, "wb") as f:
    f.write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
  ext = ".gz" if gz else ""
  x, y = RNG.integers(0, 256, (7, 5, 4), np.uint8), np.array([0, 1, 2, 1, 0, 2, 1], np.uint8)
  xt, yt = RNG.integers(0, 256, (3, 5, 4), np.uint8), np.array([2, 0, 1], np.uint8)
  for name, a in [("tr-img", x), ("tr-lab", y), ("te-img", xt), ("te-lab", yt)]:
    write_idx(str(tmp_path / (name + ext)), a, gz)
  d = sources.load(cfg(name="idx", data_dir=str(tmp_path), train_images="tr-img" + ext,
                       train_labels="tr-lab" + ext, test_images="te-img" + ext,
                       test_labels="te-lab" + ext, class_names=["a", "b", "c"]))
  np.testing.assert_array_equal(d.train_images, x[..., None])
  np.testing.assert_array_equal(d.test_images, xt[..., None])
  np.testing.assert_array_equal(d.train_labels, y)
  assert d.train_labels.dtype == np.int32 and d.class_names == ["a", "b", "c"]


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.float64])
def test_read_idx_dtypes(tmp_path, dtype):
  a = (RNG.standard_normal((2, 3, 4)) * 100).astype(dtype)
  write_idx(str(tmp_path / "a"), a)
  b = local_files.read_idx(str(tmp_path / "a"))
  assert b.dtype == dtype and b.dtype.isnative
  np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damage", ["truncated", "too_long", "bad_magic", "bad_gzip", "empty"])
def test_idx_corrupt(tmp_path, damage):
  path = str(tmp_path / "x.idx")
  write_idx(path, np.zeros((4, 3, 3), np.uint8), gz=damage == "bad_gzip")
  raw = open(path, "rb").read()
  raw = {"truncated": raw[:-5], "too_long": raw + b"\0", "bad_magic": b"\1" + raw[1:],
         "bad_gzip": raw[:len(raw) // 2], "empty": b""}[damage]
  open(path, "wb").write(raw)
  with pytest.raises(DataError, match="x.idx"):
    local_files.read_idx(path)


def test_idx_config_and_shape_errors(tmp_path):
  write_idx(str(tmp_path / "i"), np.zeros((4, 2, 2), np.uint8))
  write_idx(str(tmp_path / "l"), np.zeros((3,), np.uint8))
  with pytest.raises(DataError, match="4 images but 3 labels"):
    sources.load(cfg(name="idx", data_dir=str(tmp_path), train_images="i", train_labels="l"))
  write_idx(str(tmp_path / "l4"), np.zeros((4,), np.uint8))
  with pytest.raises(DataError, match="set dataset.test_labels"):
    sources.load(cfg(name="idx", data_dir=str(tmp_path), train_images="i", train_labels="l4",
                     test_images="i"))


# -------------------------------------------------------------------- CIFAR batches

def cifar_rows(images: np.ndarray) -> np.ndarray:
  """uint8 [N, 32, 32, 3] -> the [N, 3072] channel-major rows of the CIFAR files."""
  return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def dump(path, obj, protocol=pickle.DEFAULT_PROTOCOL):
  with open(path, "wb") as f:
    pickle.dump(obj, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_batches(tmp_path, protocol):
  parts = [RNG.integers(0, 256, (n, 32, 32, 3), np.uint8) for n in (4, 3, 2)]
  labels = [[0, 1, 2, 0], [1, 2, 0], [2, 1]]
  for i, (x, y) in enumerate(zip(parts[:2], labels), start=1):  # bytes keys, as CIFAR has
    dump(tmp_path / f"data_batch_{i}", {b"data": cifar_rows(x), b"labels": y,
                                        b"batch_label": b"batch"}, protocol)
  dump(tmp_path / "test_batch", {"data": cifar_rows(parts[2]), "labels": labels[2]}, protocol)
  dump(tmp_path / "batches.meta", {b"label_names": ["cat", "dog", "frog"]}, protocol)
  d = sources.load(cfg(name="cifar_batches", data_dir=str(tmp_path.parent),
                       directory=tmp_path.name))
  np.testing.assert_array_equal(d.train_images, np.concatenate(parts[:2]))
  np.testing.assert_array_equal(d.train_labels, labels[0] + labels[1])
  np.testing.assert_array_equal(d.test_images, parts[2])
  assert d.class_names == ["cat", "dog", "frog"]


@pytest.mark.parametrize("label_type", ["fine", "coarse"])
def test_cifar100_batches(tmp_path, label_type):
  x = RNG.integers(0, 256, (4, 32, 32, 3), np.uint8)
  batch = {"data": cifar_rows(x), "fine_labels": [0, 3, 2, 1], "coarse_labels": [0, 1, 1, 0]}
  dump(tmp_path / "train", batch)
  dump(tmp_path / "test", batch)
  dump(tmp_path / "meta", {"fine_label_names": ["a", "b", "c", "d"],
                           "coarse_label_names": ["A", "B"]})
  d = sources.load(cfg(name="cifar_batches", directory=str(tmp_path), label_type=label_type))
  np.testing.assert_array_equal(d.test_images, x)
  expected = batch[f"{label_type}_labels"]
  np.testing.assert_array_equal(d.train_labels, expected)
  assert d.class_names == (["a", "b", "c", "d"] if label_type == "fine" else ["A", "B"])


class Malicious:
  """Unpickling this would create a file: the restricted unpickler must refuse it."""

  def __init__(self, marker: str):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))


def test_cifar_pickle_with_disallowed_object_is_refused(tmp_path):
  marker = tmp_path / "pwned"
  dump(tmp_path / "data_batch_1", {"data": np.zeros((1, 3072), np.uint8), "labels": [0],
                                   "x": Malicious(str(marker))})
  with pytest.raises(DataError, match="refusing to load .*open"):
    sources.load(cfg(name="cifar_batches", directory=str(tmp_path)))
  assert not marker.exists()


def test_cifar_directory_errors(tmp_path):
  with pytest.raises(DataError, match="neither CIFAR-10"):
    sources.load(cfg(name="cifar_batches", directory=str(tmp_path)))
  with pytest.raises(DataError, match="not found"):
    sources.load(cfg(name="cifar_batches", directory=str(tmp_path / "missing")))


# -------------------------------------------------------------------- JPEG-CIFAR npz

def jpeg_bytes(image: np.ndarray) -> bytes:
  out = io.BytesIO()
  Image.fromarray(image).save(out, "JPEG", quality=75)
  return out.getvalue()


def write_jpeg_npz(path, n_train=5, n_test=3, corrupt=None):
  blobs = {s: [jpeg_bytes(patch(32, 32, i + 10 * j)) for i in range(n)]
           for j, (s, n) in enumerate([("train", n_train), ("test", n_test)])}
  if corrupt is not None:
    blobs["train"][corrupt] = blobs["train"][corrupt][:40]  # header only: truncated
  arrays = {"class_names": np.array(["a", "b", "c"])}
  for split, parts in blobs.items():
    arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(parts), np.uint8)
    arrays[f"{split}_offsets"] = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
    arrays[f"y_{split}"] = (np.arange(len(parts)) % 3).astype(np.uint8)
  np.savez_compressed(path, **arrays)
  return blobs


def test_cifar10_jpeg_decodes_and_reuses_cache(tmp_path, monkeypatch):
  blobs = write_jpeg_npz(tmp_path / "c.npz")
  config = cfg(name="cifar10_jpeg", data_dir=str(tmp_path), file="c.npz",
               cache_dir=str(tmp_path / "cache"))
  d = sources.load(config)
  assert d.train_images.shape == (5, 32, 32, 3) and d.test_images.shape == (3, 32, 32, 3)
  assert d.class_names == ["a", "b", "c"] and d.train_labels.tolist() == [0, 1, 2, 0, 1]
  expected = np.asarray(Image.open(io.BytesIO(blobs["test"][2])).convert("RGB"))
  np.testing.assert_array_equal(d.test_images[2], expected)
  assert len(os.listdir(tmp_path / "cache")) == 1

  def no_decoding(*args, **kw):
    raise AssertionError("decoded again instead of using the cache")

  monkeypatch.setattr(local_files, "decode_jpeg_split", no_decoding)
  again = sources.load(config)
  np.testing.assert_array_equal(again.train_images, d.train_images)
  assert again.class_names == d.class_names
  monkeypatch.undo()

  write_jpeg_npz(tmp_path / "c.npz", n_train=4)  # a changed file gets a new cache entry
  assert len(sources.load(config).train_labels) == 4
  assert len(os.listdir(tmp_path / "cache")) == 2


def test_cifar10_jpeg_corrupt_image_is_named(tmp_path):
  write_jpeg_npz(tmp_path / "c.npz", corrupt=3)
  with pytest.raises(DataError, match="train: image 3 is not a valid JPEG"):
    sources.load(cfg(name="cifar10_jpeg", file=str(tmp_path / "c.npz"),
                     cache_dir=str(tmp_path / "cache")))


# --------------------------------------------------------------------- image folder

def save(path, image: np.ndarray, mode: str | None = None) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  im = Image.fromarray(image)
  if mode == "I;16":
    im = Image.fromarray((np.asarray(im.convert("L"), np.uint16) * 257))
  elif mode:
    im = im.convert(mode)
  im.save(path)


def make_folder(root, classes=("cat", "dog", "fish")) -> None:
  """Three images per class with assorted sizes, formats and Pillow modes."""
  kinds = [("jpg", None, (48, 64)), ("png", "RGBA", (80, 30)), ("png", "P", (40, 40)),
           ("jpeg", "L", (120, 90)), ("png", "I;16", (33, 35)), ("jpg", "CMYK", (64, 64)),
           ("png", "LA", (20, 50)), ("PNG", "1", (30, 30)), ("png", None, (16, 16))]
  for c, name in enumerate(classes):
    for i in range(3):
      ext, mode, (h, w) = kinds[(3 * c + i) % len(kinds)]
      save(os.path.join(root, name, f"img{i}.{ext}"), patch(h, w, 3 * c + i), mode)


def folder_cfg(root, **kw):
  return cfg(name="image_folder", directory=str(root), image_size=16, **kw)


@pytest.mark.parametrize("channels,center_crop", [(3, True), (1, False)])
def test_image_folder(tmp_path, channels, center_crop):
  make_folder(tmp_path / "train")
  open(tmp_path / "train" / "cat" / "notes.txt", "w").write("not an image")
  d = sources.load(folder_cfg(tmp_path / "train", channels=channels, center_crop=center_crop))
  assert d.train_images.shape == (9, 16, 16, channels) and d.train_images.dtype == np.uint8
  assert d.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
  assert d.class_names == ["cat", "dog", "fish"] and d.test_images is None
  if channels == 3:  # fish/img2.png is a 16x16 RGB PNG: read back unchanged
    np.testing.assert_array_equal(d.train_images[8], patch(16, 16, 8))


def test_image_folder_test_directory(tmp_path):
  make_folder(tmp_path / "train")
  make_folder(tmp_path / "test", classes=("dog", "fish"))
  d = sources.load(folder_cfg(tmp_path / "train", test_directory=str(tmp_path / "test")))
  assert d.test_labels.tolist() == [1, 1, 1, 2, 2, 2]
  make_folder(tmp_path / "test", classes=("bird",))
  with pytest.raises(DataError, match="bird"):
    sources.load(folder_cfg(tmp_path / "train", test_directory=str(tmp_path / "test")))


def test_image_folder_corrupt_file(tmp_path):
  make_folder(tmp_path)
  bad = tmp_path / "dog" / "broken.jpg"
  bad.write_bytes(jpeg_bytes(patch(32, 32))[:100])
  with pytest.raises(DataError, match="broken.jpg"):
    sources.load(folder_cfg(tmp_path))
  with pytest.warns(UserWarning, match="Skipped 1 unreadable image"):
    d = sources.load(folder_cfg(tmp_path, skip_corrupt=True))
  assert len(d.train_labels) == 9


def test_image_folder_structure_errors(tmp_path):
  make_folder(tmp_path / "one", classes=("only",))
  with pytest.raises(DataError, match="only one class folder"):
    sources.load(folder_cfg(tmp_path / "one"))
  make_folder(tmp_path / "gap")
  os.makedirs(tmp_path / "gap" / "empty")
  with pytest.raises(DataError, match="without images: empty"):
    sources.load(folder_cfg(tmp_path / "gap"))
  os.makedirs(tmp_path / "none" / "a")
  os.makedirs(tmp_path / "none" / "b")
  with pytest.raises(DataError, match="No images"):
    sources.load(folder_cfg(tmp_path / "none"))
  save(str(tmp_path / "flat" / "x.png"), patch(8, 8))
  with pytest.raises(DataError, match="no class subfolders.*1 images directly"):
    sources.load(folder_cfg(tmp_path / "flat"))
  with pytest.raises(ConfigError, match="image_size"):
    sources.load(cfg(name="image_folder", directory=str(tmp_path / "gap")))
