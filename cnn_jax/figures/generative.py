"""Figures of autoencoders and generative models, each written to a PNG file.

* :func:`plot_image_rows`: labelled rows of images, e.g. input / noisy / reconstruction.
* :func:`plot_sample_grid`: one tiled grid of samples (a generator's fixed-noise batch).
* :func:`plot_latent_pca`: latent codes projected on their first two principal
  components, coloured by label when there are labels.
* :func:`plot_score_histogram`: anomaly scores of normal vs anomalous examples with the
  decision thresholds drawn.

Images are ``[N, H, W, C]`` with ``C`` 1 or 3, float in ``value_range`` (``(0, 1)`` for
sigmoid outputs, ``(-1, 1)`` for tanh generators) or uint8. As in
:mod:`cnn_jax.figures.classification`, figures are drawn without pyplot (Agg backend).
"""

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps

from cnn_jax.errors import ShapeError
from cnn_jax.figures.classification import new_figure, save_figure

THRESHOLD_COLORS = ("black", "#9467bd", "#8c564b", "#e377c2")
GAP_COLOR = (0.45, 0.6, 0.8)  # between tiles


def to_unit_range(images, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
  """``[N, H, W, C]`` uint8 or float in ``value_range`` -> float32 in [0, 1], clipped."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ShapeError(f"expected images [N, H, W, C] with C 1 or 3, got {list(images.shape)}")
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  low, high = value_range
  return np.clip((images.astype(np.float32) - low) / (high - low), 0.0, 1.0)


def tile_images(images: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
  """``[N, H, W, C]`` in [0, 1] -> one RGB ``[rows * (H + gap) - gap, cols * (W + gap) - gap,
  3]`` image, filled row by row. Gaps and empty cells are ``GAP_COLOR``, a tint that no
  gray digit has, so a white gap cannot pass for a stroke."""
  n, h, w, _ = images.shape
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  rows = max(1, math.ceil(n / cols))
  canvas = np.empty((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), np.float32)
  canvas[:] = GAP_COLOR
  for i, image in enumerate(images):
    top, left = (i // cols) * (h + gap), (i % cols) * (w + gap)
    canvas[top:top + h, left:left + w] = image
  return canvas


def _show(ax, tiled: np.ndarray) -> None:
  ax.imshow(tiled, vmin=0, vmax=1, interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])


def plot_image_rows(rows: Sequence[tuple[str, np.ndarray]], path: str, *,
                    title: str | None = None, value_range: tuple[float, float] = (0.0, 1.0),
                    max_images: int = 10) -> str:
  """One labelled row per batch: ``[("input", x), ("noisy", x_noisy), ("reconstruction",
  r)]``, the first ``max_images`` of each, column ``i`` the same example in every row.

  Rows may mix gray and colour (a translation MNIST -> MNIST-M). All rows need the same
  ``H`` and ``W``.
  """
  if not rows:
    raise ShapeError("plot_image_rows needs at least one (name, images) row")
  batches = [to_unit_range(images, value_range)[:max_images] for _, images in rows]
  if len({b.shape[1:3] for b in batches}) != 1:
    raise ShapeError(f"rows must share H and W, got {[list(b.shape) for b in batches]}")
  cols = max(len(b) for b in batches)
  fig = new_figure(max(4.0, 0.8 * cols + 1.2), 0.85 * len(rows) + (0.5 if title else 0.2))
  for i, ((name, _), batch) in enumerate(zip(rows, batches)):
    ax = fig.add_subplot(len(rows), 1, i + 1)
    _show(ax, tile_images(batch, cols))
    ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
  if title:
    fig.suptitle(title, fontsize=10)
  return save_figure(fig, path)


def plot_sample_grid(images: np.ndarray, path: str, *, cols: int | None = None,
                     title: str | None = None,
                     value_range: tuple[float, float] = (0.0, 1.0)) -> str:
  """All of ``images`` tiled in one square-ish grid (``cols`` defaults to ``ceil(sqrt(N))``)."""
  images = to_unit_range(images, value_range)
  if not len(images):
    raise ShapeError("plot_sample_grid needs at least one image")
  cols = cols or math.ceil(math.sqrt(len(images)))
  tiled = tile_images(images, cols)
  scale = 6.0 / max(tiled.shape[:2])
  fig = new_figure(max(2.0, tiled.shape[1] * scale),
                    tiled.shape[0] * scale + (0.4 if title else 0.0))
  _show(fig.add_subplot(1, 1, 1), tiled)
  if title:
    fig.suptitle(title, fontsize=10)
  return save_figure(fig, path)


def plot_latent_pca(latents: np.ndarray, path: str, *, labels: np.ndarray | None = None,
                    class_names: Sequence[str] | None = None, title: str | None = None) -> str:
  """A scatter of ``[N, D]`` latent codes on their first two principal components.

  Args:
    latents: ``[N, D]`` codes, ``N >= 2`` and ``D >= 2``.
    labels: optional int ``[N]`` classes that colour the points (with a legend).
    class_names: names indexed by class; defaults to the class numbers.
  """
  from sklearn.decomposition import PCA
  latents = np.asarray(latents, np.float64)
  if latents.ndim != 2 or latents.shape[0] < 2 or latents.shape[1] < 2:
    raise ShapeError(f"latents must be [N, D] with N >= 2 and D >= 2, got {list(latents.shape)}")
  pca = PCA(n_components=2)
  points = pca.fit_transform(latents)
  fig = new_figure(6.0, 5.0)
  ax = fig.add_subplot(1, 1, 1)
  if labels is None:
    ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6, color="#1f77b4", linewidths=0)
  else:
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(points):
      raise ShapeError(f"got {len(labels)} labels for {len(points)} latents")
    k = int(labels.max()) + 1
    names = [str(n) for n in class_names] if class_names is not None else list(map(str, range(k)))
    if len(names) < k:
      raise ShapeError(f"labels go up to {k - 1} but there are only {len(names)} class names")
    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    for c in np.unique(labels):
      chosen = labels == c
      ax.scatter(points[chosen, 0], points[chosen, 1], s=4, alpha=0.6, linewidths=0,
                 color=cmap(int(c) % cmap.N), label=names[int(c)])
    ax.legend(markerscale=3, fontsize=7, loc="best", title="label", title_fontsize=8)
  share = pca.explained_variance_ratio_
  ax.set_xlabel(f"PC 1 ({share[0]:.0%} of variance)")
  ax.set_ylabel(f"PC 2 ({share[1]:.0%} of variance)")
  ax.set_title(title or f"Latent space ({latents.shape[1]}-d) of {len(points)} examples, PCA",
               fontsize=10)
  return save_figure(fig, path)


def plot_score_histogram(normal_scores: np.ndarray, anomalous_scores: np.ndarray, path: str,
                         *, thresholds: Mapping[str, float], xlabel: str = "reconstruction error",
                         title: str | None = None, bins: int = 50) -> str:
  """Overlaid histograms of the scores of normal and anomalous examples (shared bins, each
  group normalized to sum to 1), with one vertical line per named threshold (e.g.
  ``{"mean + std": t1, "best F1": t2}``)."""
  normal = np.asarray(normal_scores, np.float64).reshape(-1)
  anomalous = np.asarray(anomalous_scores, np.float64).reshape(-1)
  if not len(normal) and not len(anomalous):
    raise ShapeError("plot_score_histogram needs at least one score")
  edges = np.histogram_bin_edges(np.concatenate([normal, anomalous]), bins=bins)
  fig = new_figure(6.5, 4.0)
  ax = fig.add_subplot(1, 1, 1)
  for scores, name, color in ((normal, "normal", "#1f77b4"), (anomalous, "anomalous", "#d62728")):
    if len(scores):  # each group as shares of itself: a small normal class stays visible
      ax.hist(scores, bins=edges, weights=np.full(len(scores), 1.0 / len(scores)),
              histtype="stepfilled", alpha=0.45, color=color, edgecolor=color,
              label=f"{name} ({len(scores)})")
  for i, (name, value) in enumerate(thresholds.items()):
    ax.axvline(value, color=THRESHOLD_COLORS[i % len(THRESHOLD_COLORS)], linestyle="--",
               linewidth=1.2, label=f"{name} = {value:.4g}")
  ax.set_xlabel(xlabel)
  ax.set_ylabel("share of the group")
  ax.legend(fontsize=8)
  ax.set_title(title or f"{xlabel.capitalize()}: normal vs anomalous", fontsize=10)
  return save_figure(fig, path)
