"""Dataset sources: each turns the ``dataset`` config section into in-memory arrays.

A source is registered in ``SOURCES`` under the name used as ``dataset.name`` and
returns an :class:`ArrayData`. Sources only load; splitting, resizing and batching
happen later (``splits.py``, ``preprocess.py``, ``pipeline.py``).

Files are looked up in ``dataset.data_dir`` or, when that is unset, in the
``CNN_JAX_DATA_DIR`` environment variable.
"""

import dataclasses
import os
import socket
import warnings
import zipfile
import zlib

import ml_collections
import numpy as np

from cnn_jax.errors import DataError
from cnn_jax.registry import Registry

SOURCES = Registry("dataset")
DATA_DIR_ENV = "CNN_JAX_DATA_DIR"


@dataclasses.dataclass
class ArrayData:
  """An image dataset held in memory: a dict of arrays per source split.

  Each split is a dict of arrays that share their first axis ``N``. Keys and kinds:

  * ``"image"``: uint8 ``[N, H, W, C]`` in 0..255 (always present).
  * ``"label"``: int32 ``[N]`` class indices (classification; used to stratify splits).
  * ``"mask"``: int32 ``[N, H, W]`` per-pixel class indices (segmentation).
  * ``"boxes"``: float32 ``[N, M, 4]`` boxes ``(y_min, x_min, y_max, x_max)`` as fractions
    of the image height and width, padded to a fixed ``M``; ``"box_classes"`` int32
    ``[N, M]``; ``"box_valid"`` bool ``[N, M]`` marks the real boxes (detection).

  Attributes:
    train: the source's training arrays.
    test: its own test split, or None (then the test set is held out of ``train``).
    class_names: one name per class (of labels, mask pixels or boxes).
  """
  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray] | None
  class_names: list[str]

  @classmethod
  def labelled(cls, train_images: np.ndarray, train_labels: np.ndarray,
               test_images: np.ndarray | None, test_labels: np.ndarray | None,
               class_names: list[str]) -> "ArrayData":
    """A classification dataset from image ``[N, H, W, C]`` and label ``[N]`` arrays."""
    test = None if test_images is None else {"image": test_images, "label": test_labels}
    return cls({"image": train_images, "label": train_labels}, test, list(class_names))

  @property
  def train_images(self) -> np.ndarray:
    return self.train["image"]

  @property
  def train_labels(self) -> np.ndarray | None:
    return self.train.get("label")

  @property
  def test_images(self) -> np.ndarray | None:
    return None if self.test is None else self.test["image"]

  @property
  def test_labels(self) -> np.ndarray | None:
    return None if self.test is None else self.test.get("label")

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train_images.shape[1:])


def data_dir(cfg: ml_collections.ConfigDict) -> str | None:
  """``dataset.data_dir`` if set, else ``$CNN_JAX_DATA_DIR``, else None."""
  return cfg.get("data_dir") or os.environ.get(DATA_DIR_ENV) or None


def resolve_path(cfg: ml_collections.ConfigDict, name: str | None, key: str,
                 directory: bool = False) -> str:
  """Finds file (or ``directory``) ``name`` = ``dataset.<key>`` as given or inside the data
  directory; raises a DataError saying where it looked and how to point at the data."""
  kind = "directory" if directory else "file"
  if not name:
    raise DataError(f"dataset.{key} is not set: give the path of the dataset {kind}.")
  candidates = [name]
  root = data_dir(cfg)
  if root and not os.path.isabs(name):
    candidates.insert(0, os.path.join(root, name))
  exists = os.path.isdir if directory else os.path.isfile
  for path in candidates:
    if exists(path):
      return path
  where = root or f"(no data_dir: set dataset.data_dir or ${DATA_DIR_ENV})"
  raise DataError(
      f"Dataset {kind} {name!r} (dataset.{key}) not found (looked in {where} and the current "
      f"directory). Pass --config.dataset.data_dir=/path/to/dir or export "
      f"{DATA_DIR_ENV}=/path/to/dir.")


def resolve_file(cfg: ml_collections.ConfigDict, filename: str, key: str = "file") -> str:
  """:func:`resolve_path` for a file."""
  return resolve_path(cfg, filename, key)


def check_class_names(names: list[str], num_classes: int, where: str) -> None:
  """Raises a DataError if ``names`` (from ``where``) is non-empty but names too few classes."""
  if names and len(names) < num_classes:
    raise DataError(f"The labels go up to {num_classes - 1} but {where} has only {len(names)} "
                    f"class names; give one name per class ({num_classes}).")


def check_test_labels(train_labels: np.ndarray, test_labels: np.ndarray, what: str) -> None:
  """Warns when the test split has classes that the training split never shows."""
  unseen = np.setdiff1d(test_labels, train_labels)
  if len(unseen):
    warnings.warn(f"{what}: the test labels include classes the training labels lack "
                  f"({', '.join(map(str, unseen[:10].tolist()))}); the model cannot learn them.")


def validate_arrays(images: np.ndarray, labels: np.ndarray,
                    what: str) -> tuple[np.ndarray, np.ndarray]:
  """Checks images are ``[N, H, W, C]`` uint8-compatible and labels ``[N]`` ints."""
  if images.ndim == 3:  # [N, H, W] grayscale without a channel axis
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
    raise DataError(f"{what}: images must have shape [N, H, W, C] with C in (1, 3, 4), "
                    f"got {list(images.shape)}.")
  labels = np.asarray(labels).reshape(-1)
  if len(labels) != len(images):
    raise DataError(f"{what}: {len(images)} images but {len(labels)} labels.")
  if not np.issubdtype(labels.dtype, np.integer) or (len(labels) and labels.min() < 0):
    raise DataError(f"{what}: labels must be non-negative integer class indices, "
                    f"got dtype {labels.dtype}.")
  if images.dtype != np.uint8:
    if np.issubdtype(images.dtype, np.floating) and images.size and images.max() <= 1.0:
      images = np.round(images * 255.0)
    images = np.clip(images, 0, 255).astype(np.uint8)
  return images, labels.astype(np.int32)


ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"


def read_npz(path: str) -> dict[str, np.ndarray]:
  """Every array of the ``.npz`` at ``path``, read without unpickling anything.

  Raises:
    DataError: naming the file, if it is not an npz archive, is damaged, or holds arrays of
      Python objects (which would need unpickling, and unpickling can run code).
  """
  try:
    with open(path, "rb") as f:
      head = f.read(len(NPY_MAGIC))
  except OSError as e:
    raise DataError(f"Cannot read {path}: {e.strerror}.") from None
  if head.startswith(NPY_MAGIC):
    raise DataError(f"{path} is a single .npy array, not an .npz archive; save the arrays "
                    "with np.savez(path, name=array, ...).")
  if not head.startswith(ZIP_MAGIC):
    what = "is empty" if not head else f"starts with the bytes {head[:4].hex()}"
    raise DataError(f"{path} is not an .npz archive (a zip of arrays made by np.savez): it "
                    f"{what}. Re-create or re-download it.")
  arrays, name = {}, None
  try:
    with np.load(path, allow_pickle=False) as d:
      for name in d.files:
        arrays[name] = d[name]
  except ValueError as e:
    if "allow_pickle" in str(e):  # numpy: "Object arrays cannot be loaded when ..."
      raise DataError(f"{path}: array {name!r} holds Python objects, which are not loaded "
                      "(that needs unpickling, which can run code); store plain numeric or "
                      "string arrays.") from None
    raise DataError(f"{path}: array {name!r} is damaged ({e}); re-create or re-download "
                    "the file.") from None
  except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path} is a corrupt or truncated .npz archive ({e}); re-create or "
                    "re-download it.") from None
  return arrays


@SOURCES.register("digits")
def load_digits(cfg: ml_collections.ConfigDict) -> ArrayData:
  """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download).

  Values 0..16 are rescaled to 0..255. There is no official test split.
  """
  from sklearn.datasets import load_digits as sk_load_digits
  digits = sk_load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return ArrayData.labelled(images, digits.target.astype(np.int32), None, None,
                   [str(i) for i in range(10)])


@SOURCES.register("npz")
def load_npz(cfg: ml_collections.ConfigDict) -> ArrayData:
  """An ``.npz`` with ``x_train, y_train`` and optionally ``x_test, y_test`` (uint8 NHWC).

  Config: ``dataset.file`` (a path, or a name inside the data directory) and
  optionally ``dataset.class_names``.
  """
  path = resolve_file(cfg, cfg.file)
  arrays = read_npz(path)
  missing = [k for k in ("x_train", "y_train") if k not in arrays]
  if missing:
    raise DataError(f"{path} has no array {', '.join(missing)} (it has: "
                    f"{', '.join(sorted(arrays)) or 'nothing'}). Expected x_train, y_train "
                    "and optionally x_test, y_test.")
  x_train, y_train = validate_arrays(arrays["x_train"], arrays["y_train"], f"{path} train")
  x_test = y_test = None
  if "x_test" in arrays and "y_test" in arrays:
    x_test, y_test = validate_arrays(arrays["x_test"], arrays["y_test"], f"{path} test")
    if x_test.shape[1:] != x_train.shape[1:]:
      raise DataError(f"{path}: test images {list(x_test.shape[1:])} differ in shape from "
                      f"train images {list(x_train.shape[1:])}.")
    check_test_labels(y_train, y_test, path)
  num_classes = int(max(y_train.max(), -1 if y_test is None else y_test.max())) + 1
  names, where = list(cfg.get("class_names") or []), "dataset.class_names"
  if "class_names" in arrays:
    names, where = [str(n) for n in arrays["class_names"]], f"{path} (array class_names)"
  check_class_names(names, num_classes, where)
  return ArrayData.labelled(x_train, y_train, x_test, y_test,
                   names or [str(i) for i in range(num_classes)])


def _network_reachable(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return True
  except OSError:
    return False


def _readable(name: str, root: str | None, split: str = "train") -> bool:
  """Whether ``tfds.data_source`` can already open ``split`` (prepared as ArrayRecord,
  or mocked by ``tfds.testing.mock_data``)."""
  import tensorflow_datasets as tfds
  try:
    tfds.data_source(name, split=split, data_dir=root, download=False)
    return True
  except Exception:  # not prepared, or prepared in a format without random access
    return False


# tfds datasets with masks or boxes, read into ArrayData's keys at dataset.image_size: the
# trimaps of oxford_iiit_pet (1 pet, 2 background, 3 outline) become mask classes 1, 0, 2;
# voc's objects become padded boxes, box_classes (mask class - 1) and box_valid.
DENSE_TFDS = ("oxford_iiit_pet", "voc")
TRIMAP_TO_MASK = np.array([-1, 1, 0, 2])  # trimap value -> mask class (0 never occurs)


def _dense_tfds(cfg: ml_collections.ConfigDict, name: str, root: str | None, builder,
                has_test: bool) -> ArrayData:
  """oxford_iiit_pet or voc (``DENSE_TFDS``) read from ``tfds.data_source``, images resized
  (bilinear; masks nearest) to ``dataset.image_size`` squares; box fractions are unchanged
  by the resize, and voc's boxes are padded to the most objects of an image."""
  import tensorflow_datasets as tfds
  from PIL import Image
  size, base = int(cfg.get("image_size") or 0), name.split("/")[0].split(":")[0]
  if size <= 0:
    raise DataError(f"tfds {name!r} has images of many sizes; set dataset.image_size (e.g. "
                    "128) to resize them to one square size.")

  def resized(array, resample):  # [h, w, c] uint8 -> [size, size, c]
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    return np.asarray(image.resize((size, size), resample)).reshape(size, size, -1)

  def read(split: str) -> dict:
    source = tfds.data_source(name, split=split, data_dir=root, download=False)
    examples = [source[i] for i in range(len(source))]
    arrays = {"image": np.stack([resized(np.asarray(e["image"], np.uint8),
                                         Image.Resampling.BILINEAR) for e in examples])}
    if base == "oxford_iiit_pet":
      trimaps = np.stack([resized(np.asarray(e["segmentation_mask"], np.uint8),
                                  Image.Resampling.NEAREST)[..., 0] for e in examples])
      if trimaps.min(initial=1) < 1 or trimaps.max(initial=1) > 3:
        raise DataError(f"tfds {name}/{split}: trimap values must be 1 (pet), 2 (background) "
                        f"or 3 (outline), found {np.unique(trimaps)[:5].tolist()}.")
      return {**arrays, "mask": TRIMAP_TO_MASK[trimaps].astype(np.int32)}
    arrays["boxes"] = [np.asarray(e["objects"]["bbox"], np.float32).reshape(-1, 4)
                       for e in examples]
    arrays["box_classes"] = [np.asarray(e["objects"]["label"], np.int32) for e in examples]
    return arrays

  splits = {split: read(split) for split in ("train", "test") if split == "train" or has_test}
  if base == "oxford_iiit_pet":
    return ArrayData(splits["train"], splits.get("test"), ["background", "pet", "outline"])
  most = max(1, *(len(b) for arrays in splits.values() for b in arrays["boxes"]))
  for arrays in splits.values():
    valid = np.arange(most) < np.array([len(b) for b in arrays["boxes"]])[:, None]
    arrays["boxes"] = np.stack([np.pad(b, ((0, most - len(b)), (0, 0))) for b in arrays["boxes"]])
    arrays["box_classes"] = np.stack([np.pad(c, (0, most - len(c))) for c in arrays["box_classes"]])
    arrays["box_valid"] = valid
  names = builder.info.features["objects"]["label"].names
  return ArrayData(splits["train"], splits.get("test"), ["background", *names])


@SOURCES.register("tfds")
def load_tfds(cfg: ml_collections.ConfigDict) -> ArrayData:
  """A tensorflow-datasets dataset, read without TensorFlow.

  Config: ``dataset.tfds_name`` (e.g. ``"mnist"``), ``dataset.data_dir`` (the tfds data
  directory), ``dataset.download`` (prepare it if missing). Uses ``tfds.data_source``
  (ArrayRecord, random access). Classification datasets (``image`` and ``label``) must have
  images of one shape; ``oxford_iiit_pet`` (masks) and ``voc`` (boxes) are resized to
  ``dataset.image_size`` (see ``DENSE_TFDS``).
  """
  import tensorflow_datasets as tfds
  name, root = cfg.tfds_name, data_dir(cfg)
  try:
    builder = tfds.builder(name, data_dir=root)
  except Exception as e:  # unknown name, broken installation
    raise DataError(f"tensorflow-datasets has no dataset {name!r} ({e}).") from None
  if not builder.is_prepared() and not _readable(name, root):
    how = (f"Prepare it on a machine with internet access (python -c \"import tensorflow_datasets "
           f"as tfds; tfds.builder('{name}', data_dir='DIR').download_and_prepare("
           f"file_format='array_record')\") and pass --config.dataset.data_dir=DIR, or use a "
           "local file with dataset.name='npz'.")
    if not cfg.get("download", True):
      raise DataError(f"tfds dataset {name!r} is not prepared in {builder.data_dir} and "
                      f"dataset.download is False. {how}")
    if not _network_reachable():
      raise DataError(f"tfds dataset {name!r} is not in {builder.data_dir} and there is no "
                      f"internet connection to download it. {how}")
    builder.download_and_prepare(file_format="array_record")
  splits = builder.info.splits
  # Mocked datasets list no splits.
  has_test = "test" in splits or (not splits and _readable(name, root, "test"))
  if name.split("/")[0].split(":")[0] in DENSE_TFDS:
    return _dense_tfds(cfg, name, root, builder, has_test)
  image_key = cfg.get("image_key", "image")
  label_key = cfg.get("label_key", "label")

  def read(split: str) -> tuple[np.ndarray, np.ndarray]:
    source = tfds.data_source(name, split=split, data_dir=root, download=False)
    examples = [source[i] for i in range(len(source))]
    try:
      images = np.stack([np.asarray(e[image_key]) for e in examples])
    except ValueError:
      raise DataError(f"tfds {name!r}: images differ in size; use an image-folder source or a "
                      "dataset with fixed-size images.") from None
    labels = np.array([e[label_key] for e in examples])
    return validate_arrays(images, labels, f"tfds {name}/{split}")

  x_train, y_train = read("train")
  x_test = y_test = None
  if has_test:
    x_test, y_test = read("test")
  names = builder.info.features[label_key].names
  return ArrayData.labelled(x_train, y_train, x_test, y_test, list(names))


def load(cfg: ml_collections.ConfigDict) -> ArrayData:
  """Loads the dataset that ``cfg`` (the ``dataset`` config section) names."""
  return SOURCES.get(cfg.name)(cfg)
