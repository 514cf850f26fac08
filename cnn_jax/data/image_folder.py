"""The ``image_folder`` source: one subfolder of JPEG/PNG files per class, read with Pillow.

::

  flowers/                      dataset.directory = "flowers"
    daisy/0001.jpg ...          class 0 (classes are the sorted folder names)
    rose/a/b.png ...            class 1 (files in nested folders count too)

Every image, whatever its size and mode, becomes uint8 ``[S, S, C]`` for
``S = dataset.image_size`` and ``C = dataset.channels``.
"""

import os
import warnings

import ml_collections
import numpy as np
from PIL import Image, ImageOps

from cnn_jax.data.local_files import map_in_threads, stack_images
from cnn_jax.data.sources import SOURCES, ArrayData, resolve_path, validate_arrays
from cnn_jax.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_images(directory: str) -> tuple[list[str], list[str], np.ndarray]:
  """Returns ``(class_names, paths, labels int32 [N])`` of the image files under ``directory``.

  Hidden files and folders and files without an image extension are ignored. Raises
  DataError when there are no class folders or some class folder has no images.
  """
  classes = sorted(e.name for e in os.scandir(directory)
                   if e.is_dir() and not e.name.startswith("."))
  if not classes:
    loose = [f for f in os.listdir(directory) if f.lower().endswith(IMAGE_EXTENSIONS)]
    hint = (f" It holds {len(loose)} images directly: move them into one subfolder per class."
            if loose else "")
    raise DataError(f"{directory} has no class subfolders.{hint}")
  paths, labels, empty = [], [], []
  for label, name in enumerate(classes):
    found = []
    for root, dirs, files in os.walk(os.path.join(directory, name), followlinks=True):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      found += [os.path.join(root, f) for f in sorted(files)
                if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    if not found:
      empty.append(name)
    paths += found
    labels += [label] * len(found)
  if len(empty) == len(classes):
    raise DataError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in any class folder of "
                    f"{directory}.")
  if empty:
    raise DataError(f"{directory}: class folder(s) without images: {', '.join(empty)}. Add "
                    "images or remove the folders.")
  return classes, paths, np.asarray(labels, np.int32)


def _to_mode(im: Image.Image, mode: str) -> Image.Image:
  """Converts any Pillow mode (palette, alpha, 16-bit, CMYK, ...) to ``"L"`` or ``"RGB"``."""
  if im.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grayscale: keep the top 8 bits
    im = Image.fromarray((np.asarray(im, np.int64).clip(0, 65535) >> 8).astype(np.uint8))
  elif im.mode in ("P", "PA"):  # palettes may carry transparency: expand it first
    im = im.convert("RGBA")
  return im if im.mode == mode else im.convert(mode)


def load_image(path: str, size: int, channels: int, center_crop: bool) -> np.ndarray:
  """Reads one image file -> uint8 ``[size, size, channels]``.

  ``center_crop``: resize the shorter side to ``size`` and cut the centre square (the
  aspect ratio is kept); otherwise resize both sides to ``size``. Bilinear, antialiased.
  Large JPEGs are decoded at a reduced scale that is still at least twice ``size``. EXIF
  orientation is applied.
  """
  mode = "L" if channels == 1 else "RGB"
  with Image.open(path) as im:
    w, h = im.size
    scale = 2 * size / min(w, h) if center_crop else 1  # JPEG: decode at >= 2x the target
    im.draft(mode, (int(w * scale), int(h * scale)) if center_crop else (2 * size, 2 * size))
    im = _to_mode(ImageOps.exif_transpose(im), mode)
  w, h = im.size
  box = None
  if center_crop:
    short = min(w, h)
    box = ((w - short) / 2, (h - short) / 2, (w + short) / 2, (h + short) / 2)
  image = np.asarray(im.resize((size, size), Image.Resampling.BILINEAR, box=box))
  return image.reshape(size, size, channels)


def _read_folder(cfg: ml_collections.ConfigDict, key: str,
                 classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Lists and decodes ``dataset.<key>``; test folders map onto the train ``classes``."""
  size, channels = cfg.get("image_size"), cfg.get("channels", 3)
  if not isinstance(size, int) or size <= 0:
    raise ConfigError(f"image_folder needs dataset.image_size (a positive int), got {size!r}.")
  if channels not in (1, 3):
    raise ConfigError(f"dataset.channels must be 1 or 3, got {channels!r}.")
  center_crop, skip = cfg.get("center_crop", True), cfg.get("skip_corrupt", False)
  directory = resolve_path(cfg, cfg.get(key), key, directory=True)
  names, paths, labels = list_images(directory)
  if classes is not None:
    unknown = sorted(set(names) - set(classes))
    if unknown:
      raise DataError(f"{directory} has class folder(s) {', '.join(unknown)} that the training "
                      f"folder lacks (its classes: {', '.join(classes)}).")
    labels = np.asarray([classes.index(n) for n in names], np.int32)[labels]
    names = classes

  def decode(i: int) -> np.ndarray | None:
    try:
      return load_image(paths[i], size, channels, center_crop)
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad files
      if skip:
        return None
      raise DataError(f"Cannot read image {paths[i]}: {type(e).__name__}: {e}. Fix or delete "
                      "it, or set dataset.skip_corrupt=True to skip unreadable files.") from None

  images = map_in_threads(decode, len(paths), int(cfg.get("decode_workers", 2)), chunk=64)
  ok = np.array([x is not None for x in images], bool)
  if not ok.all():
    bad = [paths[i] for i in np.flatnonzero(~ok)]
    warnings.warn(f"Skipped {len(bad)} unreadable image(s) of {len(paths)} in {directory} "
                  f"(first: {bad[0]}).")
    lost = sorted(set(names[j] for j in labels) - set(names[j] for j in labels[ok]))
    if lost:
      raise DataError(f"{directory}: every image of class(es) {', '.join(lost)} is unreadable.")
  images = stack_images([x for x in images if x is not None], directory)
  x, y = validate_arrays(images, labels[ok], directory)
  return x, y, names


@SOURCES.register("image_folder")
def load_image_folder(cfg: ml_collections.ConfigDict) -> ArrayData:
  """Images in one subfolder per class, resized to a common size.

  Config: ``dataset.directory`` (looked up in the data directory), ``dataset.image_size``
  (int), ``dataset.channels`` (1 grayscale or 3 RGB, default 3), ``dataset.center_crop``
  (default True), ``dataset.skip_corrupt`` (default False: an unreadable file is an error;
  True: skip it and warn with the count), ``dataset.test_directory`` (optional separate
  test split with the same class folder names), ``dataset.decode_workers`` (threads,
  default 2).
  """
  x_train, y_train, classes = _read_folder(cfg, "directory")
  if len(classes) < 2:
    raise DataError(f"dataset.directory has only one class folder ({classes[0]!r}): a "
                    "classifier needs at least two.")
  x_test = y_test = None
  if cfg.get("test_directory"):
    x_test, y_test, _ = _read_folder(cfg, "test_directory", classes)
  return ArrayData.labelled(x_train, y_train, x_test, y_test, classes)
