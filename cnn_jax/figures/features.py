"""What a trained classifier learned: its first-layer filters and one input's feature maps.

``python -m cnn_jax features --workdir W --image FILE --out maps.png`` draws one PNG: the
input image and the first convolution's filters as a grid (RGB when the input has three
channels, each filter stretched to the full range on its own), then, for every stage the
model reports in its features dict (``stage1``, ``stage2``, ...; 1x1 maps are left out),
the maps of the most active channels of that input (each map stretched on its own,
brighter = stronger).
"""

import math
from typing import Any

import numpy as np

from cnn_jax.errors import CnnJaxError
from cnn_jax.figures.classification import new_figure, save_figure

MAX_FILTERS = 64
MAPS_PER_STAGE = 16


def first_conv_kernel(params: Any) -> np.ndarray:
  """The kernel ``[kh, kw, C_in, C_out]`` of the first convolution in ``params`` (flax keeps
  modules in the order they were created, so the first 4-D ``kernel`` found depth first).

  Raises:
    CnnJaxError: the parameters hold no convolution kernel.
  """
  if hasattr(params, "items"):
    for key, value in params.items():
      if key == "kernel" and getattr(value, "ndim", 0) == 4:
        return np.asarray(value, np.float32)
      if hasattr(value, "items"):
        try:
          return first_conv_kernel(value)
        except CnnJaxError:
          continue
  raise CnnJaxError("the network has no convolution kernel to draw; features needs a CNN.")


def _stretch(x: np.ndarray) -> np.ndarray:
  """``x`` scaled to [0, 1] (a constant array becomes 0.5)."""
  low, high = float(x.min()), float(x.max())
  return np.full_like(x, 0.5) if high - low < 1e-12 else (x - low) / (high - low)


def filter_images(kernel: np.ndarray) -> np.ndarray:
  """``[kh, kw, C_in, C_out] -> [C_out, kh, kw, 3 or 1]`` displayable filters in [0, 1]: the
  RGB filter for 3 input channels, else the mean over input channels."""
  filters = np.moveaxis(kernel, -1, 0)
  if filters.shape[-1] != 3:
    filters = filters.mean(axis=-1, keepdims=True)
  return np.stack([_stretch(f) for f in filters])


def strongest_channels(maps: np.ndarray, count: int) -> np.ndarray:
  """Indices of the ``count`` channels of ``maps`` ``[H, W, C]`` with the largest mean
  absolute activation, strongest first."""
  return np.argsort(-np.abs(maps).mean(axis=(0, 1)), kind="stable")[:count]


def plot_features(image: np.ndarray, kernel: np.ndarray, stages: dict[str, np.ndarray],
                  path: str, title: str) -> str:
  """The figure: ``image`` ``[H, W, C]`` in [0, 1] and the filters of ``kernel`` in the first
  row, then one row per entry of ``stages`` (``name -> [h, w, C]`` maps of that image)."""
  filters = filter_images(kernel)[:MAX_FILTERS]
  grid_cols = math.isqrt(len(filters) - 1) + 1  # a square-ish grid
  columns = max(MAPS_PER_STAGE // 2, 1 + grid_cols)
  rows = 1 + 2 * len(stages)  # every stage's maps in two rows of MAPS_PER_STAGE / 2
  fig = new_figure(1.1 * columns, 1.1 * (rows + 1) + 0.6)
  grid = fig.add_gridspec(rows, columns, height_ratios=[2] + [1] * (rows - 1))
  ax = fig.add_subplot(grid[0, 0])
  ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
  ax.set_title("input", fontsize=8)
  ax.axis("off")
  ax = fig.add_subplot(grid[0, 1:])
  ax.imshow(_tile(filters, grid_cols), cmap="gray", interpolation="nearest")
  ax.set_title(f"first-layer filters ({kernel.shape[0]}x{kernel.shape[1]}, "
               f"{len(filters)} of {kernel.shape[-1]})", fontsize=8)
  ax.axis("off")
  for s, (name, maps) in enumerate(stages.items()):
    chosen = strongest_channels(maps, MAPS_PER_STAGE)
    for i, channel in enumerate(chosen):
      ax = fig.add_subplot(grid[1 + 2 * s + i // columns, i % columns])
      ax.imshow(_stretch(maps[..., channel]), cmap="viridis", interpolation="nearest")
      ax.set_title(f"{name} #{channel}" if i else
                   f"{name} {maps.shape[0]}x{maps.shape[1]}x{maps.shape[2]}: #{channel}",
                   fontsize=6, loc="left")
      ax.axis("off")
  fig.suptitle(title, fontsize=10)
  return save_figure(fig, path)


def _tile(images: np.ndarray, columns: int, gap: int = 1) -> np.ndarray:
  """``[N, h, w, C]`` -> one ``[rows * (h + gap), columns * (w + gap), C]`` image (white gaps;
  C = 1 is squeezed for imshow)."""
  n, h, w, c = images.shape
  rows = -(-n // columns)
  canvas = np.ones((rows * (h + gap) - gap, columns * (w + gap) - gap, c), np.float32)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    canvas[r * (h + gap):r * (h + gap) + h, col * (w + gap):col * (w + gap) + w] = image
  return canvas.squeeze(-1) if c == 1 else canvas


def run_features(task: Any, state: Any, image: np.ndarray, path: str, title: str) -> str:
  """Draws the filters and feature maps of the classifier ``state.nets["net"]`` of ``task``
  (a supervised task: its ``normalize`` is applied first) for ``image`` ``[H, W, C]`` in
  [0, 1] at the run's input size.

  Raises:
    CnnJaxError: the run has no single network whose output carries a features dict, or
      no convolution.
  """
  net = state.nets.get("net")
  batch = image[None].astype(np.float32)
  if net is None:
    raise CnnJaxError("features draws classifier runs (one network 'net'); this run has "
                      f"{', '.join(state.nets)}.")
  inputs = batch if task.normalize is None else task.normalize(batch)
  outputs, _ = net.apply(inputs, train=False)
  if not (isinstance(outputs, tuple) and len(outputs) == 2 and isinstance(outputs[1], dict)):
    raise CnnJaxError("the run's network returns no features dict; features needs a model of "
                      "the zoo (logits, features).")
  stages = {k: np.asarray(v[0], np.float32) for k, v in sorted(outputs[1].items())
            if k.startswith("stage") and getattr(v, "ndim", 0) == 4
            and v.shape[1] * v.shape[2] > 1}  # a 1x1 map has nothing to show
  if not stages:
    raise CnnJaxError("the network reports no stage feature maps (features['stage1'], ...).")
  return plot_features(image, first_conv_kernel(net.params), stages, path, title)
