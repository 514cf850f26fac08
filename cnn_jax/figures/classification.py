"""Figures of a run, each written to a PNG file.

Every function takes data and an output path, writes the PNG and returns the path. The
figures are drawn on :class:`matplotlib.figure.Figure` objects rendered by the Agg
backend, without pyplot: no window opens and no global matplotlib state is touched, so
plotting is safe in scripts, tests and threads.
"""

import math
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnn_jax.errors import ShapeError

DPI = 120
TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#d62728"
# Above these many classes, confusion cells lose their numbers and curves their legend.
MAX_ANNOTATED_CLASSES = 20
MAX_LEGEND_CLASSES = 10


def new_figure(width: float, height: float) -> Figure:
  """A ``width x height``-inch figure drawn off screen (no display needed)."""
  fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def save_figure(fig: Figure, path: str) -> str:
  """Writes ``fig`` as a PNG at ``path`` (creating its folder); returns ``path``."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=DPI)
  return path


def _titled(default: str, dataset: str | None) -> str:
  """``default``, followed by `` (dataset)`` when a dataset name is given."""
  return f"{default} ({dataset})" if dataset else default


def _names(class_names: Sequence[str] | None, k: int) -> list[str]:
  if class_names is None:
    return [str(i) for i in range(k)]
  if len(class_names) != k:
    raise ShapeError(f"got {len(class_names)} class names for {k} classes")
  return [str(n) for n in class_names]


def plot_confusion_matrix(confusion, path: str, *, class_names: Sequence[str] | None = None,
                          title: str | None = None, dataset: str | None = None) -> str:
  """Counts (left) and row-normalized rates (right) of a ``[K, K]`` confusion matrix.

  Rows are true classes, columns predicted ones. Cells carry their numbers up to
  ``MAX_ANNOTATED_CLASSES`` classes (cells that are zero at the printed precision stay
  blank); beyond that only colors, with thinned tick labels. Without a ``title`` the
  figure is titled "Confusion matrix (``dataset``)".
  """
  cm = np.asarray(confusion, np.float64)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ShapeError(f"a confusion matrix is [K, K], got {list(cm.shape)}")
  k = cm.shape[0]
  names = _names(class_names, k)
  rows = cm.sum(axis=1, keepdims=True)
  normalized = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
  side = min(max(4.5, 0.42 * k + 2), 12)
  fig = new_figure(2 * side + 1, side)
  fig.get_layout_engine().set(h_pad=0.1)  # room for the descenders of "predicted"
  annotate = k <= MAX_ANNOTATED_CLASSES
  step = max(1, math.ceil(k / 100))  # a 12-inch side fits 100 labels in 5-point type
  fontsize = max(5, min(10, 180 / k))
  panels = ((cm, "counts", "{:.0f}", None, MaxNLocator(integer=True)),
            (normalized, "normalized by row (recall)", "{:.2f}", 1.0, None))
  for i, (data, label, fmt, vmax, ticks) in enumerate(panels):
    ax = fig.add_subplot(1, 2, i + 1)
    image = ax.imshow(data, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, ticks=ticks)
    ticks = np.arange(0, k, step)
    ax.set_xticks(ticks, [names[t] for t in ticks], rotation=90 if k > 10 else 45,
                  ha="center" if k > 10 else "right", fontsize=fontsize)
    ax.set_yticks(ticks, [names[t] for t in ticks], fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(label)
    if annotate:
      threshold = data.max() / 2
      for t in range(k):
        for p in range(k):
          text = fmt.format(data[t, p])
          if float(text) != 0:
            ax.text(p, t, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if data[t, p] > threshold else "black")
  fig.suptitle(title or _titled("Confusion matrix", dataset))
  return save_figure(fig, path)


def _curve_sets(curves: dict) -> tuple[dict[str, dict], str]:
  """Per-class curves and a legend title from binary_curves / one_vs_rest_curves output."""
  if "per_class" in curves:
    title = (f"macro AUC = {curves['macro_auc']:.3f}, "
             f"macro AP = {curves['macro_average_precision']:.3f}")
    if curves["skipped"]:
      title += f"\n(skipped, one class only: {', '.join(curves['skipped'][:5])})"
    return curves["per_class"], title
  return {"positive": curves}, ""


def _mark_operating_point(ax, point: dict, kind: str) -> None:
  """A marker where the decision threshold of ``point`` (the output of
  :func:`~cnn_jax.metrics.classification.binary_metrics_at_threshold`) sits on the curve."""
  missing = {"threshold", "precision", "recall", "specificity"} - set(point)
  if missing:
    raise ShapeError(f"operating_point lacks {', '.join(sorted(missing))}: pass the output of "
                     "binary_metrics_at_threshold")
  if kind == "roc":
    x, y = 1.0 - point["specificity"], point["recall"]
    values = f"FPR {x:.2f}, TPR {y:.2f}"
  else:
    x, y = point["recall"], point["precision"]
    values = f"recall {x:.2f}, precision {y:.2f}"
  ax.plot([x], [y], "o", markersize=8, markerfacecolor="none", markeredgecolor="black",
          markeredgewidth=1.5, label=f"threshold {point['threshold']:.2f}: {values}", zorder=3)


def _plot_curve_family(curves: dict, path: str, kind: str, title: str | None,
                       dataset: str | None, operating_point: dict | None) -> str:
  per_class, legend_title = _curve_sets(curves)
  many = len(per_class) > MAX_LEGEND_CLASSES
  fig = new_figure(6, 5.5)
  ax = fig.add_subplot(1, 1, 1)
  for name, c in per_class.items():
    if kind == "roc":
      x, y, score = c["roc"]["fpr"], c["roc"]["tpr"], f"AUC = {c['auc']:.3f}"
    else:
      x, y, score = c["pr"]["recall"], c["pr"]["precision"], f"AP = {c['average_precision']:.3f}"
    label = None if many else (score if len(per_class) == 1 else f"{name} ({score})")
    ax.plot(x, y, linewidth=0.7 if many else 1.6, alpha=0.5 if many else 1.0, label=label,
            drawstyle="default" if kind == "roc" else "steps-post")
  if kind == "roc":
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="chance")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (recall)")
  else:
    if len(per_class) == 1:
      c = next(iter(per_class.values()))
      prevalence = c["num_positive"] / (c["num_positive"] + c["num_negative"])
      ax.axhline(prevalence, linestyle="--", color="gray", linewidth=1,
                 label=f"chance (prevalence {prevalence:.2f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
  if operating_point is not None:
    _mark_operating_point(ax, operating_point, kind)
  ax.set_xlim(-0.01, 1.01)
  ax.set_ylim(-0.01, 1.01)
  ax.set_aspect("equal")
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=8,
            title=legend_title or None, title_fontsize=8)
  default = (("ROC curve" if kind == "roc" else "Precision-recall curve")
             + ("s, one vs rest" if len(per_class) > 1 else ""))
  ax.set_title(title or _titled(default, dataset))
  return save_figure(fig, path)


def plot_roc(curves: dict, path: str, *, title: str | None = None, dataset: str | None = None,
             operating_point: dict | None = None) -> str:
  """ROC curve(s) from :func:`binary_curves` or :func:`one_vs_rest_curves` output.

  One-vs-rest figures show the macro AUC in the legend title; with more than
  ``MAX_LEGEND_CLASSES`` classes the per-class curves are thin and unlabeled.
  ``operating_point`` (the output of ``binary_metrics_at_threshold``: ``threshold``,
  ``recall``, ``specificity``, ``precision``) is marked on the curve with its threshold.
  Without a ``title`` the figure is titled "ROC curve (``dataset``)".
  """
  return _plot_curve_family(curves, path, "roc", title, dataset, operating_point)


def plot_pr(curves: dict, path: str, *, title: str | None = None, dataset: str | None = None,
            operating_point: dict | None = None) -> str:
  """Precision-recall curve(s) from :func:`binary_curves` or :func:`one_vs_rest_curves`,
  with ``operating_point`` and ``dataset`` as in :func:`plot_roc`."""
  return _plot_curve_family(curves, path, "pr", title, dataset, operating_point)


def plot_per_class(per_class: dict, path: str, *, class_names: Sequence[str] | None = None,
                   title: str | None = None, dataset: str | None = None) -> str:
  """Horizontal precision and recall bars per class, with each class's support.

  Args:
    per_class: ``compute(stats)["per_class"]``: ``K``-long ``precision``, ``recall`` and
      ``support`` lists.
    path: the PNG to write.
    class_names: ``K`` names.
    title: the title; default "Precision and recall per class (``dataset``)".
  """
  precision = np.asarray(per_class["precision"])
  recall = np.asarray(per_class["recall"])
  support = per_class["support"]
  k = len(precision)
  names = _names(class_names, k)
  fig = new_figure(7, min(0.4 * k, 4 + 0.14 * k) + 1.2)  # 100 classes: 19 inches
  ax = fig.add_subplot(1, 1, 1)
  y = np.arange(k)
  ax.barh(y - 0.2, precision, height=0.4, color=TRAIN_COLOR, label="precision")
  ax.barh(y + 0.2, recall, height=0.4, color=VAL_COLOR, label="recall")
  fontsize = max(5, min(9, 500 / k))
  ax.set_yticks(y, [f"{n} (n={s})" for n, s in zip(names, support)], fontsize=fontsize)
  ax.invert_yaxis()
  # Zoom in when every class is good, so differences between classes stay visible.
  low = min(precision.min(initial=1.0), recall.min(initial=1.0))
  ax.set_xlim(np.floor(max(low - 0.02, 0.0) * 20) / 20 if low > 0.5 else 0.0, 1.0)
  for i, (p, r) in enumerate(zip(precision, recall)):
    ax.text(1.0, i, f" P {p:.3f}  R {r:.3f}", va="center", fontsize=max(5, fontsize - 1),
            transform=ax.get_yaxis_transform())
  ax.set_ylim(k - 0.5, -0.5)
  ax.grid(axis="x", alpha=0.3)
  ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncols=2, fontsize=8, frameon=False)
  ax.set_title(title or _titled("Precision and recall per class", dataset), loc="right")
  return save_figure(fig, path)


def plot_image_grid(images, captions: Sequence[str], path: str, *, title: str,
                    caption_color: str = "black", cols: int = 6) -> str:
  """A grid of images with one caption each.

  Args:
    images: ``[N, H, W, C]`` (``C`` 1 or 3, or ``[N, H, W]``) float in [0, 1] or uint8.
    captions: ``N`` captions (long ones are wrapped at " / ").
    path: the PNG to write.
    title: the figure title.
  """
  images = np.asarray(images)
  if images.ndim == 4 and images.shape[-1] == 1:
    images = images[..., 0]
  if images.ndim not in (3, 4) or len(images) != len(captions):
    raise ShapeError(f"expected images [N, H, W, C] and N captions, got {list(images.shape)} "
                     f"and {len(captions)} captions")
  if images.dtype != np.uint8:
    images = np.clip(images.astype(np.float32), 0.0, 1.0)
  captions = list(captions)
  if any(len(c) > 22 for c in captions):  # long captions: two lines everywhere
    captions = [c.replace(" / ", " /\n") for c in captions]
  cols = min(cols, max(1, len(images)))
  rows = max(1, math.ceil(len(images) / cols))
  fig = new_figure(max(4.0, 1.9 * cols), 2.05 * rows + 0.4 if len(images) else 0.6)
  for i, (image, caption) in enumerate(zip(images, captions)):
    ax = fig.add_subplot(rows, cols, i + 1)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0,
              vmax=255 if images.dtype == np.uint8 else 1, interpolation="nearest")
    ax.set_title(caption, fontsize=8, color=caption_color)
    ax.set_axis_off()
  fig.suptitle(title, fontsize=10)
  return save_figure(fig, path)


def plot_misclassified(images, labels, predictions, path: str, *,
                       class_names: Sequence[str] | None = None, max_images: int = 24,
                       probabilities=None, dataset: str | None = None) -> str:
  """A grid of the first ``max_images`` examples with ``label != prediction``.

  Args:
    images: ``[N, H, W, C]`` (``C`` 1 or 3, or ``[N, H, W]``) float in [0, 1] or uint8.
    labels: int ``[N]`` true classes.
    predictions: int ``[N]`` predicted classes.
    path: the PNG to write.
    class_names: names indexed by class; defaults to the class numbers.
    max_images: at most this many panels.
    probabilities: optional ``[N, K]`` class probabilities; each caption then shows the
      predicted class's probability.
    dataset: the dataset's name for the title.
  """
  images = np.asarray(images)
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  if len(images) != len(labels) or labels.shape != predictions.shape:
    raise ShapeError(f"expected images [N, H, W, C] with labels and predictions [N], got "
                     f"{list(images.shape)}, {list(labels.shape)}, {list(predictions.shape)}")
  if probabilities is not None:
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
      raise ShapeError(f"expected probabilities [N, K] for N={len(labels)} examples, got "
                       f"{list(probabilities.shape)}")
  name = (lambda c: str(class_names[c])) if class_names is not None else str
  wrong = np.nonzero(labels != predictions)[0][:max_images]
  title = (f"Misclassified: {len(wrong)} shown of {int(np.sum(labels != predictions))} "
           f"wrong out of {len(labels)}" if len(wrong) else
           f"No misclassified examples among {len(labels)}")
  captions = []
  for i in wrong:
    confidence = "" if probabilities is None else f" (p={probabilities[i, predictions[i]]:.2f})"
    captions.append(f"true: {name(labels[i])} / pred: {name(predictions[i])}{confidence}")
  return plot_image_grid(images[wrong], captions, path, title=_titled(title, dataset),
                         caption_color="#b00000")
