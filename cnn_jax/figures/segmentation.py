"""Segmentation figures: image | ground truth | prediction overlays and per-class IoU bars.

Like :mod:`cnn_jax.figures.classification`, every function writes one PNG (Agg backend, no
pyplot) and returns its path.
"""

from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.patches import Patch, Rectangle

from cnn_jax.errors import ShapeError
from cnn_jax.figures.classification import _names, new_figure, save_figure

BACKGROUND_RGB = (0.0, 0.0, 0.0)
IGNORE_RGB = (1.0, 1.0, 1.0)


def class_colours(num_classes: int) -> np.ndarray:
  """``[K, 3]`` RGB in [0, 1]: black for class 0 (background), then tab10 / tab20 colours."""
  cmap = matplotlib.colormaps["tab10" if num_classes <= 11 else "tab20"]
  colours = [cmap(i % cmap.N)[:3] for i in range(max(num_classes - 1, 0))]
  return np.asarray([BACKGROUND_RGB, *colours][:num_classes], np.float64)


def overlay(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.75,
            ignore_label: int | None = None) -> np.ndarray:
  """``mask`` ``[H, W]`` painted over a dimmed grey copy of ``image`` ``[H, W, C]``.

  The image (uint8, or floats in [0, 1]) is turned grey so that the class colours read
  true; class ``c`` pixels are blended with colour ``c`` at ``alpha``, ``ignore_label``
  pixels with white, background (class 0) is left grey. Returns float ``[H, W, 3]`` in
  [0, 1].
  """
  image = np.asarray(image, np.float64)
  if image.max(initial=0) > 1.0:
    image = image / 255.0
  grey = image.mean(axis=-1) if image.ndim == 3 else image
  image = np.repeat(0.7 * grey[..., None], 3, axis=-1)
  mask = np.asarray(mask)
  if mask.shape != image.shape[:2]:
    raise ShapeError(f"mask {list(mask.shape)} does not match image {list(image.shape)}.")
  colours = np.vstack([class_colours(num_classes), IGNORE_RGB])
  index = np.where((mask >= 0) & (mask < num_classes), mask, num_classes)
  if ignore_label is None:
    index = np.where(index == num_classes, 0, index)
  weight = np.where(index == 0, 0.0, alpha)[..., None]
  return image * (1 - weight) + colours[index] * weight


def plot_segmentation_examples(images, masks, path: str, *, predictions=None,
                               class_names: Sequence[str] | None = None, boxes=None,
                               box_valid=None, ignore_label: int | None = None,
                               title: str | None = None, alpha: float = 0.75) -> str:
  """One row per example: image | ground truth overlay | prediction overlay.

  Args:
    images: ``[N, H, W, C]`` uint8 or floats in [0, 1].
    masks: int ``[N, H, W]`` true classes (0 = background).
    path: the PNG to write.
    predictions: int ``[N, H, W]`` predicted classes; omit for a data preview (2 columns).
    class_names: ``K`` names (the legend); default ``"0" .. "K-1"`` for the classes seen.
    boxes: optional float ``[N, M, 4]`` ``(y_min, x_min, y_max, x_max)`` fractions drawn
      on the ground truth, with ``box_valid`` bool ``[N, M]`` (default: all).
    ignore_label: mask value drawn white instead of as a class.
    title: figure title.
    alpha: opacity of the class colours.
  """
  images, masks = np.asarray(images), np.asarray(masks)
  if images.ndim != 4 or masks.shape != images.shape[:3]:
    raise ShapeError(f"expected images [N, H, W, C] and masks [N, H, W], got "
                     f"{list(images.shape)} and {list(masks.shape)}.")
  if predictions is not None and np.shape(predictions) != masks.shape:
    raise ShapeError(f"predictions {list(np.shape(predictions))} differ from masks "
                     f"{list(masks.shape)}.")
  seen = [masks] + ([] if predictions is None else [np.asarray(predictions)])
  labels = np.concatenate([m.ravel() for m in seen])
  num_classes = (len(class_names) if class_names is not None
                 else int(labels[labels != ignore_label].max(initial=0)) + 1)
  names = _names(class_names, num_classes)
  columns = [("image", None), ("ground truth", masks)]
  if predictions is not None:
    columns.append(("prediction", np.asarray(predictions)))
  n = len(images)
  fig = new_figure(2.2 * len(columns) + 1.6, 2.2 * n + 0.4)
  axes = fig.subplots(n, len(columns), squeeze=False)
  height, width = images.shape[1:3]
  for i in range(n):
    for j, (label, mask) in enumerate(columns):
      ax = axes[i, j]
      shown = images[i] if mask is None else overlay(images[i], mask[i], num_classes, alpha,
                                                     ignore_label)
      ax.imshow(np.squeeze(shown), cmap="gray" if images.shape[-1] == 1 else None,
                interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(label)
      if label == "ground truth" and boxes is not None:
        valid = np.ones(np.shape(boxes)[:2], bool) if box_valid is None else box_valid
        for y0, x0, y1, x1 in np.asarray(boxes[i])[np.asarray(valid[i])]:
          ax.add_patch(Rectangle((x0 * width - 0.5, y0 * height - 0.5), (x1 - x0) * width,
                                 (y1 - y0) * height, fill=False, edgecolor="yellow",
                                 linewidth=1))
  colours = class_colours(num_classes)
  fig.legend(handles=[Patch(color=colours[c], label=names[c]) for c in range(1, num_classes)],
             loc="outside right center", fontsize="small")
  if title:
    fig.suptitle(title)
  return save_figure(fig, path)


def plot_class_iou(iou, path: str, *, class_names: Sequence[str] | None = None,
                   mean_iou: float | None = None, title: str | None = None) -> str:
  """Horizontal bars of per-class IoU (NaN classes, absent from the data, left empty).

  Args:
    iou: ``[K]`` IoU per class (e.g. ``compute(...)["per_class"]["iou"]``).
    path: the PNG to write.
    class_names: ``K`` names.
    mean_iou: drawn as a dashed line (default: the mean over the non-NaN classes).
    title: figure title.
  """
  iou = np.asarray(iou, np.float64)
  names = _names(class_names, len(iou))
  present = np.isfinite(iou)
  if mean_iou is None:
    mean_iou = float(iou[present].mean()) if present.any() else float("nan")
  fig = new_figure(6, 0.35 * len(iou) + 1.2)
  ax = fig.subplots()
  rows = np.arange(len(iou))
  ax.barh(rows, np.where(present, iou, 0.0), color=class_colours(len(iou)).clip(0.15))
  for row, value in zip(rows, iou):
    ax.text(min(value, 1.0) + 0.01 if np.isfinite(value) else 0.01, row,
            f"{value:.3f}" if np.isfinite(value) else "absent", va="center", fontsize="small")
  xlabel = "IoU"
  if np.isfinite(mean_iou):  # named in the axis label: a legend would cover a bar's value
    ax.axvline(mean_iou, color="gray", linestyle="--")
    xlabel = f"IoU (dashed line: mean IoU {mean_iou:.3f})"
  ax.set_yticks(rows, names)
  ax.invert_yaxis()
  ax.set_xlim(0, 1.1)
  ax.set_xlabel(xlabel)
  ax.grid(axis="x", alpha=0.3)
  ax.set_title(title or "Per-class IoU")
  return save_figure(fig, path)
