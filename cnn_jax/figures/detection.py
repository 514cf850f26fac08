"""Detection figures: predicted and ground-truth boxes drawn on the images.

Like :mod:`cnn_jax.figures.classification`, every function writes one PNG (Agg backend, no
pyplot) and returns its path. Boxes are ``(y_min, x_min, y_max, x_max)`` fractions of the
image height and width, as everywhere in cnn_jax.
"""

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.patches import Rectangle

from cnn_jax.errors import ShapeError
from cnn_jax.figures.classification import _names, new_figure, save_figure

GROUND_TRUTH_COLOR = "white"
LABEL_MARGIN = 0.1  # fraction of the height a prediction's label needs above its box


def _draw_box(ax, box, height: int, width: int, **style) -> Rectangle:
  """Adds one fractional box to an ``imshow`` axis (pixel edges sit at -0.5)."""
  y0, x0, y1, x1 = box
  return ax.add_patch(Rectangle((x0 * width - 0.5, y0 * height - 0.5), (x1 - x0) * width,
                                (y1 - y0) * height, fill=False, **style))


def plot_detections(images, predictions: dict, path: str, *, boxes=None, classes=None,
                    valid=None, class_names: Sequence[str] | None = None,
                    num_classes: int | None = None, score_threshold: float = 0.3,
                    max_images: int = 16, cols: int = 4, title: str | None = None) -> str:
  """A grid of images with the predicted boxes (solid, coloured by class, labelled with the
  class and score) and, where given, the ground-truth boxes (dashed white, with the class).

  Args:
    images: ``[N, H, W, C]`` (``C`` 1 or 3) float in [0, 1] or uint8.
    predictions: ``{"boxes": [N, D, 4], "scores": [N, D], "classes": [N, D],
      "valid": [N, D]}`` padded predictions (as from ``detector.detect``).
    path: the PNG to write.
    boxes, classes, valid: optional ground truth ``[N, M, 4]``, ``[N, M]``, ``[N, M]``.
    class_names: one name per class; class indices are shown otherwise.
    num_classes: the number of classes when ``class_names`` is not given (for the colours;
      default: the largest class drawn + 1).
    score_threshold: predictions scoring below it are not drawn.
    max_images: the first this many images are drawn.
    cols: images per row.
    title: the figure title.
  """
  images = np.asarray(images)[:max_images]
  pred = {k: np.asarray(predictions[k])[:max_images]
          for k in ("boxes", "scores", "classes", "valid")}
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or pred["boxes"].shape[:1] != \
      images.shape[:1] or pred["boxes"].ndim != 3 or pred["boxes"].shape[-1] != 4:
    raise ShapeError(f"expected images [N, H, W, C] (C 1 or 3) and predicted boxes "
                     f"[N, D, 4], got {list(images.shape)} and {list(pred['boxes'].shape)}")
  truth = None if boxes is None else (np.asarray(boxes)[:max_images],
                                      np.asarray(classes)[:max_images],
                                      np.asarray(valid, bool)[:max_images])
  drawn = [pred["classes"][pred["valid"].astype(bool)]] + ([truth[1][truth[2]]] if truth else [])
  k = len(class_names) if class_names is not None else num_classes or int(
      max((c.max(initial=-1) for c in drawn), default=-1)) + 1
  names = _names(class_names, k)
  cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
  shown = images.astype(np.float32) / 255 if images.dtype == np.uint8 else np.clip(images, 0, 1)
  n, height, width = images.shape[:3]
  cols = min(cols, max(1, n))
  rows = max(1, math.ceil(n / cols))
  fig = new_figure(max(4.0, 2.6 * cols), 2.7 * rows + 0.5)
  fontsize = 7
  for i in range(n):
    ax = fig.add_subplot(rows, cols, i + 1)
    gray = shown.shape[-1] == 1
    ax.imshow(shown[i, ..., 0] if gray else shown[i], cmap="gray" if gray else None, vmin=0,
              vmax=1, interpolation="nearest")
    num_true = 0
    if truth:
      for box, c in zip(truth[0][i][truth[2][i]], truth[1][i][truth[2][i]]):
        _draw_box(ax, box, height, width, edgecolor=GROUND_TRUTH_COLOR, linestyle="--",
                  linewidth=1.2)
        ax.text(box[1] * width - 0.5, box[2] * height - 0.5, names[c], color="black",
                fontsize=fontsize, va="bottom", clip_on=True,  # inside, at the bottom left
                bbox={"facecolor": GROUND_TRUTH_COLOR, "alpha": 0.7, "pad": 1, "lw": 0})
        num_true += 1
    keep = pred["valid"][i].astype(bool) & (pred["scores"][i] >= score_threshold)
    for box, c, score in zip(pred["boxes"][i][keep], pred["classes"][i][keep],
                             pred["scores"][i][keep]):
      color = cmap(int(c) % cmap.N)
      _draw_box(ax, box, height, width, edgecolor=color, linewidth=1.6)
      at_top = box[0] < LABEL_MARGIN  # no room above the box: label inside it
      ax.text(box[1] * width - 0.5, box[0] * height - 0.5, f"{names[c]} {score:.2f}",
              color="white", fontsize=fontsize, va="top" if at_top else "bottom", clip_on=True,
              bbox={"facecolor": color, "alpha": 0.85, "pad": 1, "lw": 0})
    caption = f"{int(keep.sum())} predicted" + (f", {num_true} true" if truth else "")
    ax.set_title(caption, fontsize=8)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_axis_off()
  legend = f"solid: predictions (score >= {score_threshold:g})"
  fig.suptitle((f"{title}\n" if title else "") + legend +
               (", dashed: ground truth" if truth else ""), fontsize=9)
  return save_figure(fig, path)
