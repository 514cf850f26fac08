"""Sources for common dataset files on disk.

Registered names (``dataset.name``):

* ``idx``: raw MNIST-style idx files, gzipped or not.
* ``cifar_batches``: the "python version" CIFAR-10 / CIFAR-100 batches, read with a
  restricted unpickler.
* ``cifar10_jpeg``: an npz of JPEG bytes + offsets (the format of the shared
  ``cifar10_jpeg.npz``, see the data README),
  decoded once with Pillow and cached as plain uint8 arrays.

Also the helpers ``image_folder`` shares: :func:`map_in_threads`
and :func:`stack_images`.
"""

import glob
import gzip
import hashlib
import io
import os
import pickle
import re
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import ml_collections
import numpy as np
import PIL
from PIL import Image

from cnn_jax.data.sources import (SOURCES, ArrayData, check_class_names, check_test_labels,
                                  read_npz, resolve_file, resolve_path, validate_arrays)
from cnn_jax.errors import DataError

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "cnn_jax")
CACHE_FORMAT = 1  # bump when the cached arrays change meaning


def map_in_threads(fn: Callable, n: int, workers: int, chunk: int = 512) -> list:
  """``[fn(i) for i in range(n)]``, computed in chunks on ``workers`` threads.

  Threads, not processes: Pillow releases the GIL while it decodes and resizes, and a
  forked child of a process running JAX can deadlock while a spawned one re-imports JAX.
  """
  def run(start: int) -> list:
    return [fn(i) for i in range(start, min(start + chunk, n))]

  starts = range(0, n, chunk)
  if workers <= 1 or n <= chunk:
    parts = map(run, starts)
  else:
    with ThreadPoolExecutor(workers) as pool:
      parts = list(pool.map(run, starts))
  return [y for part in parts for y in part]


def stack_images(images: list[np.ndarray], what: str) -> np.ndarray:
  """Stacks ``[H, W, C]`` arrays into ``[N, H, W, C]``; a size mismatch names the image."""
  if not images:
    raise DataError(f"{what}: no images.")
  shape = images[0].shape
  for i, image in enumerate(images):
    if image.shape != shape:
      raise DataError(f"{what}: image {i} has shape {list(image.shape)} but image 0 has "
                      f"{list(shape)}; all images must have the same size.")
  return np.stack(images)


def _class_names(cfg: ml_collections.ConfigDict, num_classes: int, what: str) -> list[str]:
  """``dataset.class_names`` if set (checked against the labels), else "0", "1", ..."""
  names = [str(n) for n in (cfg.get("class_names") or [])]
  check_class_names(names, num_classes, f"dataset.class_names (for {what})")
  return names or [str(i) for i in range(num_classes)]


# ---------------------------------------------------------------------------- idx

# idx type codes (third byte of the magic number) -> big-endian numpy dtypes.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
  """Reads an idx file (gzipped or not, detected from its first bytes) into a numpy array.

  The header is 2 zero bytes, a type code, the number of dimensions ``D`` and ``D``
  big-endian uint32 sizes; the data follow in C order. Raises DataError naming the file
  when the header is malformed or the data are truncated or too long.
  """
  try:
    with open(path, "rb") as f:
      raw = f.read()
    if raw[:2] == b"\x1f\x8b":
      raw = gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"Cannot read idx file {path}: {e}.") from None
  if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_DTYPES or raw[3] == 0:
    raise DataError(f"{path} is not an idx file: bad magic number {raw[:4].hex() or '(empty)'} "
                    "(expected 0000 + a type code + the number of dimensions).")
  ndim, dtype = raw[3], np.dtype(IDX_DTYPES[raw[2]])
  start = 4 + 4 * ndim
  if len(raw) < start:
    raise DataError(f"{path}: idx header truncated ({len(raw)} bytes, {ndim} dimensions).")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
  expected = start + int(np.prod(shape)) * dtype.itemsize
  if len(raw) != expected:
    problem = "truncated" if len(raw) < expected else "longer than its header says"
    raise DataError(f"{path}: idx file {problem}: header {list(shape)} of {dtype.name} needs "
                    f"{expected} bytes, the file has {len(raw)}.")
  return np.frombuffer(raw, dtype, offset=start).reshape(shape).astype(dtype.newbyteorder("="))


@SOURCES.register("idx")
def load_idx(cfg: ml_collections.ConfigDict) -> ArrayData:
  """MNIST-style idx files, e.g. ``train-images-idx3-ubyte.gz``.

  Config: ``dataset.train_images``, ``dataset.train_labels`` and optionally
  ``dataset.test_images``, ``dataset.test_labels`` (file names, looked up in the data
  directory), ``dataset.class_names``.
  """
  def read(images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    missing = [f"dataset.{k}" for k in (images_key, labels_key) if not cfg.get(k)]
    if missing:
      raise DataError(f"idx: set {' and '.join(missing)} (idx file names).")
    images_path = resolve_file(cfg, cfg[images_key], images_key)
    labels_path = resolve_file(cfg, cfg[labels_key], labels_key)
    return validate_arrays(read_idx(images_path), read_idx(labels_path),
                           f"{images_path} + {labels_path}")

  x_train, y_train = read("train_images", "train_labels")
  x_test = y_test = None
  if cfg.get("test_images") or cfg.get("test_labels"):
    x_test, y_test = read("test_images", "test_labels")
    if x_test.shape[1:] != x_train.shape[1:]:
      raise DataError(f"idx: test images {list(x_test.shape[1:])} differ in shape from train "
                      f"images {list(x_train.shape[1:])}.")
    check_test_labels(y_train, y_test, "idx")
  num_classes = int(max(y_train.max(), -1 if y_test is None else y_test.max())) + 1
  return ArrayData.labelled(x_train, y_train, x_test, y_test,
                   _class_names(cfg, num_classes, "idx"))


# -------------------------------------------------------------------- CIFAR pickles

# The only globals a CIFAR batch may name. Everything else in these files (dicts, lists,
# str, bytes, int) is built by pickle opcodes without any import. numpy arrays need their
# reconstructors plus ndarray and dtype; protocol-2 pickles written by Python 3 encode
# bytes with _codecs.encode. A pickle naming any other global (os.system, eval, ...) is
# refused before anything is called.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
  """An unpickler that resolves only the globals in ``_ALLOWED_GLOBALS``."""

  def find_class(self, module: str, name: str):
    if module.startswith("numpy.core."):  # numpy < 2 wrote pickles naming numpy.core
      module = "numpy._core." + module[len("numpy.core."):]
    if (module, name) not in _ALLOWED_GLOBALS:
      raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays, "
                                   "dicts, lists, strings, bytes and numbers are allowed)")
    return super().find_class(module, name)


def load_pickle(path: str) -> dict:
  """Safely unpickles a CIFAR batch: a dict whose bytes keys are decoded to str."""
  try:
    with open(path, "rb") as f:
      obj = _RestrictedUnpickler(f, encoding="latin1").load()
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
          ImportError, IndexError, OSError) as e:
    raise DataError(f"Cannot load CIFAR batch {path}: {e}.") from None
  if not isinstance(obj, dict):
    raise DataError(f"{path}: expected a dict, got {type(obj).__name__}.")
  return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_arrays(batch: dict, label_key: str, path: str) -> tuple[np.ndarray, np.ndarray]:
  """``data`` [N, 3072] (channel-major 32x32) -> uint8 [N, 32, 32, 3], labels int32 [N]."""
  if "data" not in batch or label_key not in batch:
    raise DataError(f"{path}: no {'data' if 'data' not in batch else label_key!r} entry "
                    f"(it has: {', '.join(sorted(map(str, batch)))}).")
  data = np.asarray(batch["data"])
  if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
    raise DataError(f"{path}: data has shape {list(data.shape)}, expected [N, 3072].")
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return validate_arrays(np.ascontiguousarray(images), np.asarray(batch[label_key]), path)


@SOURCES.register("cifar_batches")
def load_cifar_batches(cfg: ml_collections.ConfigDict) -> ArrayData:
  """The CIFAR-10 or CIFAR-100 "python version" (the extracted ``cifar-*-python.tar.gz``).

  CIFAR-10: ``data_batch_1..5``, ``test_batch``, ``batches.meta``. CIFAR-100: ``train``,
  ``test``, ``meta``. Config: ``dataset.directory`` (looked up in the data directory) and,
  for CIFAR-100, ``dataset.label_type``: ``"fine"`` (100 classes, default) or
  ``"coarse"`` (20 superclasses).
  """
  root = resolve_path(cfg, cfg.get("directory"), "directory", directory=True)
  batches = sorted(glob.glob(os.path.join(root, "data_batch_*")),
                   key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0))
  if batches:  # CIFAR-10
    test_file, meta_file = "test_batch", "batches.meta"
    label_key, names_key = "labels", "label_names"
  elif os.path.isfile(os.path.join(root, "train")):  # CIFAR-100
    label_type = cfg.get("label_type", "fine")
    if label_type not in ("fine", "coarse"):
      raise DataError(f"dataset.label_type must be 'fine' or 'coarse', got {label_type!r}.")
    batches, test_file, meta_file = [os.path.join(root, "train")], "test", "meta"
    label_key, names_key = f"{label_type}_labels", f"{label_type}_label_names"
  else:
    raise DataError(f"{root} holds neither CIFAR-10 batches (data_batch_1, ...) nor CIFAR-100 "
                    "files (train, test): point dataset.directory at the extracted "
                    "cifar-10-batches-py or cifar-100-python folder.")
  parts = [_cifar_arrays(load_pickle(p), label_key, p) for p in batches]
  x_train = np.concatenate([x for x, _ in parts])
  y_train = np.concatenate([y for _, y in parts])
  x_test = y_test = None
  test_path = os.path.join(root, test_file)
  if os.path.isfile(test_path):
    x_test, y_test = _cifar_arrays(load_pickle(test_path), label_key, test_path)
    check_test_labels(y_train, y_test, root)
  meta_path = os.path.join(root, meta_file)
  num_classes = int(max(y_train.max(), -1 if y_test is None else y_test.max())) + 1
  meta = load_pickle(meta_path) if os.path.isfile(meta_path) else {}
  names = [str(n) for n in meta.get(names_key, [])]
  if len(names) < num_classes:
    names = _class_names(cfg, num_classes, root)
  return ArrayData.labelled(x_train, y_train, x_test, y_test, names)


# ------------------------------------------------------------------- JPEG-CIFAR npz


def cache_path(path: str, cache_dir: str) -> str:
  """Where the decoded copy of ``path`` is cached.

  The key hashes the file's size, mtime and first MiB, the Pillow version (decoders
  differ by a few levels) and ``CACHE_FORMAT``; changing the file makes a new entry.
  """
  stat = os.stat(path)
  digest = hashlib.sha256(
      f"{CACHE_FORMAT}|{stat.st_size}|{stat.st_mtime_ns}|Pillow {PIL.__version__}".encode())
  with open(path, "rb") as f:
    digest.update(f.read(1 << 20))
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.join(os.path.expanduser(cache_dir), f"{stem}-{digest.hexdigest()[:16]}.npz")


def decode_jpeg_split(buf: np.ndarray, offsets: np.ndarray, what: str,
                      workers: int = 1) -> np.ndarray:
  """Decodes ``buf[offsets[i]:offsets[i + 1]]`` for every ``i`` -> uint8 ``[N, H, W, 3]``."""
  if (offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(buf)
      or np.any(np.diff(offsets) < 0)):
    raise DataError(f"{what}: offsets must rise from 0 to the {len(buf)} JPEG bytes.")
  view = memoryview(np.ascontiguousarray(buf))

  def decode(i: int) -> np.ndarray:
    try:
      with Image.open(io.BytesIO(view[offsets[i]:offsets[i + 1]]), formats=["JPEG"]) as im:
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad data
      raise DataError(f"{what}: image {i} is not a valid JPEG ({type(e).__name__}: {e}).") from None

  return stack_images(map_in_threads(decode, len(offsets) - 1, workers), what)


def _decode_jpeg_npz(path: str, workers: int) -> dict[str, np.ndarray]:
  arrays = read_npz(path)
  needed = ["train_jpeg", "train_offsets", "y_train"]
  if any(k not in arrays for k in needed):
    raise DataError(f"{path} lacks {', '.join(k for k in needed if k not in arrays)}: not a "
                    "JPEG-bytes npz (train_jpeg, train_offsets, y_train[, test_*, class_names]).")
  out = {"y_train": arrays["y_train"],
         "x_train": decode_jpeg_split(arrays["train_jpeg"], arrays["train_offsets"],
                                      f"{path} train", workers)}
  if all(k in arrays for k in ("test_jpeg", "test_offsets", "y_test")):
    out["y_test"] = arrays["y_test"]
    out["x_test"] = decode_jpeg_split(arrays["test_jpeg"], arrays["test_offsets"],
                                      f"{path} test", workers)
  if "class_names" in arrays:
    out["class_names"] = arrays["class_names"]
  return out


def _read_cache(path: str) -> dict[str, np.ndarray] | None:
  if not os.path.exists(path):
    return None
  try:
    return read_npz(path)
  except DataError as e:
    warnings.warn(f"Ignoring the unreadable cache file: {e} Decoding again.")
    return None


def _write_cache(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes atomically (temp file + rename); a read-only cache only warns."""
  tmp = f"{path}.tmp{os.getpid()}.npz"
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
  except OSError as e:
    warnings.warn(f"Cannot write the decoded-image cache {path} ({e}); the next run will "
                  "decode again. Set dataset.cache_dir to a writable directory.")
    if os.path.exists(tmp):
      os.remove(tmp)


@SOURCES.register("cifar10_jpeg")
def load_cifar10_jpeg(cfg: ml_collections.ConfigDict) -> ArrayData:
  """CIFAR-10 stored as JPEG bytes (``cifar10_jpeg.npz``), decoded once and then cached.

  Config: ``dataset.file`` (default ``"cifar10_jpeg.npz"``, looked up in the data
  directory), ``dataset.cache_dir`` (default ``~/.cache/cnn_jax``), ``dataset.decode_workers``
  (threads, default 1). The first run decodes with Pillow and writes
  ``<cache_dir>/cifar10_jpeg-<key>.npz`` (uint8, about 185 MB); later runs read that.
  """
  path = resolve_file(cfg, cfg.get("file") or "cifar10_jpeg.npz")
  cached = cache_path(path, cfg.get("cache_dir") or DEFAULT_CACHE_DIR)
  arrays = _read_cache(cached)
  if arrays is None:
    arrays = _decode_jpeg_npz(path, int(cfg.get("decode_workers", 1)))
    _write_cache(cached, arrays)
  x_train, y_train = validate_arrays(arrays["x_train"], arrays["y_train"], f"{path} train")
  x_test = y_test = None
  if "x_test" in arrays:
    x_test, y_test = validate_arrays(arrays["x_test"], arrays["y_test"], f"{path} test")
    check_test_labels(y_train, y_test, path)
  num_classes = int(max(y_train.max(), -1 if y_test is None else y_test.max())) + 1
  names = ([str(n) for n in arrays["class_names"]] if "class_names" in arrays
           else _class_names(cfg, num_classes, path))
  return ArrayData.labelled(x_train, y_train, x_test, y_test, names)
