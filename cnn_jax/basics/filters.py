"""The classic hand-made 3x3 filters of the course notes, applying them, and a picture of them.

Each constant is a read-only float32 ``[3, 3]`` array. Applying one is a cross-correlation
(what ``lax.conv_general_dilated`` and every CNN layer compute: multiply elementwise, then
sum; the kernel is not flipped), so ``SOBEL_X`` responds positively where the image gets
brighter to the right.

Example::

  blurred = apply_filter(images, GAUSSIAN_BLUR, padding="reflect")  # [B, H, W, C]
"""

import fractions
import os
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.basics.padding import pad_images
from cnn_jax.errors import DataError, ShapeError


def _kernel(rows: list[list[int]], scale: int = 1) -> np.ndarray:
  kernel = np.asarray(rows, np.float32) / scale
  kernel.setflags(write=False)
  return kernel


IDENTITY = _kernel([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
# The notes' three edge detectors: the diagonal (corner) one, the 4-neighbour Laplacian and
# the negated 8-neighbour Laplacian ("outline"), which finds edges in every direction.
EDGE_DIAGONAL = _kernel([[1, 0, -1], [0, 0, 0], [-1, 0, 1]])
LAPLACIAN = _kernel([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
EDGE_ALL_DIRECTIONS = _kernel([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
SHARPEN = _kernel([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
BOX_BLUR = _kernel([[1, 1, 1], [1, 1, 1], [1, 1, 1]], 9)
GAUSSIAN_BLUR = _kernel([[1, 2, 1], [2, 4, 2], [1, 2, 1]], 16)
# Vertical edges are intensity changes along x; the notes' kernels are Prewitt's.
VERTICAL_EDGE = _kernel([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]])
HORIZONTAL_EDGE = _kernel([[-1, -1, -1], [0, 0, 0], [1, 1, 1]])
PREWITT_X = VERTICAL_EDGE
PREWITT_Y = HORIZONTAL_EDGE
SOBEL_X = _kernel([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
SOBEL_Y = _kernel([[-1, -2, -1], [0, 0, 0], [1, 2, 1]])

# Every distinct kernel above, by display name, in the notes' order.
FILTERS: dict[str, np.ndarray] = {
    "identity": IDENTITY,
    "edge (diagonal)": EDGE_DIAGONAL,
    "Laplacian": LAPLACIAN,
    "edge (all directions)": EDGE_ALL_DIRECTIONS,
    "sharpen": SHARPEN,
    "box blur": BOX_BLUR,
    "Gaussian blur": GAUSSIAN_BLUR,
    "vertical edge (Prewitt x)": VERTICAL_EDGE,
    "horizontal edge (Prewitt y)": HORIZONTAL_EDGE,
    "Sobel x": SOBEL_X,
    "Sobel y": SOBEL_Y,
}


def apply_filter(images: jnp.ndarray, kernel: np.ndarray, padding: str = "zeros") -> jnp.ndarray:
  """Filters every channel of ``[B, H, W, C]`` images with one ``[kh, kw]`` kernel.

  The images are padded by ``(kh // 2, kw // 2)`` pixels holding ``padding`` (``"zeros"``,
  ``"replicate"`` or ``"reflect"``, see :mod:`cnn_jax.basics.padding`), so the output keeps
  the shape ``[B, H, W, C]``; channels are filtered independently (a depthwise
  ``lax.conv_general_dilated`` with ``feature_group_count = C``).

  Raises:
    ShapeError: for images that are not 4-D or a kernel that is not 2-D with odd sides.
  """
  images = jnp.asarray(images, jnp.float32)
  kernel = np.asarray(kernel, np.float32)
  if images.ndim != 4:
    raise ShapeError(f"apply_filter takes images of shape [B, H, W, C], got "
                     f"{list(images.shape)}; add a batch axis with images[None].")
  if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
    raise ShapeError(f"The kernel must be [kh, kw] with odd sides, got {list(kernel.shape)}.")
  channels = images.shape[-1]
  pads = [(kernel.shape[0] // 2,) * 2, (kernel.shape[1] // 2,) * 2]
  padded = pad_images(images, pads, padding)
  weights = jnp.broadcast_to(jnp.asarray(kernel)[:, :, None, None], kernel.shape + (1, channels))
  return jax.lax.conv_general_dilated(
      padded, weights, window_strides=(1, 1), padding="VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)


def format_kernel(kernel: np.ndarray) -> str:
  """The kernel as text, with a common fraction factored out: ``"1/16 x\\n 1  2  1\\n..."``."""
  values = [fractions.Fraction(float(v)).limit_denominator(256) for v in np.ravel(kernel)]
  denominator = int(np.lcm.reduce([v.denominator for v in values]))
  integers = np.reshape([int(v * denominator) for v in values], np.shape(kernel))
  width = max(len(str(v)) for v in integers.ravel())
  lines = [" ".join(str(v).rjust(width) for v in row) for row in integers]
  return "\n".join(([f"1/{denominator} ×"] if denominator > 1 else []) + lines)


def load_image(path: Optional[str] = None, max_size: int = 320) -> np.ndarray:
  """An RGB photo as float32 ``[H, W, 3]`` in ``[0, 1]``, shrunk so ``max(H, W) <= max_size``.

  Without ``path`` it is scikit-learn's bundled ``china.jpg`` (works offline).

  Raises:
    DataError: when ``path`` does not exist or is not an image.
  """
  from PIL import Image
  if path is None:
    from sklearn.datasets import load_sample_image
    image = Image.fromarray(load_sample_image("china.jpg"))
  else:
    if not os.path.isfile(path):
      raise DataError(f"No image file {path!r}; pass --image PATH to a JPEG or PNG.")
    try:
      image = Image.open(path).convert("RGB")
    except OSError as e:
      raise DataError(f"Cannot read {path!r} as an image ({e}); pass a JPEG or PNG.") from e
  image.thumbnail((max_size, max_size))
  return np.asarray(image, np.float32) / 255.0


def _displayable(response: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, str]:
  """``[H, W, C]`` filter output -> (image to show, caption of the mapping).

  Kernels summing to zero (edge detectors) respond with signed changes around 0: they are
  shown as the per-pixel channel mean of ``|response|``, scaled to its 99th percentile.
  """
  if abs(float(np.sum(kernel))) < 1e-6:
    magnitude = np.abs(response).mean(axis=-1)
    return np.clip(magnitude / max(np.percentile(magnitude, 99), 1e-6), 0, 1), "|response|"
  return np.clip(response, 0, 1), "clipped to [0, 1]"


def filter_grid(image: np.ndarray, out_path: str, padding: str = "zeros",
                filters: Mapping[str, np.ndarray] = FILTERS) -> str:
  """Draws ``image`` (``[H, W, 3]`` in [0, 1]) and its filtered copies, each with its kernel
  printed beside it, into a PNG at ``out_path``; returns the path."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  panels = [("original", image, f"{image.shape[0]}x{image.shape[1]}\n{padding}\npadding")]
  for name, kernel in filters.items():
    shown, caption = _displayable(np.asarray(apply_filter(image[None], kernel, padding)[0]),
                                  kernel)
    panels.append((f"{name}\n({caption})", shown, format_kernel(kernel)))

  columns = 4
  rows = -(-len(panels) // columns)
  aspect = image.shape[0] / image.shape[1]
  fig = plt.figure(figsize=(columns * 4.6, rows * (3.2 * aspect + 0.8)))
  grid = fig.add_gridspec(rows, 2 * columns, width_ratios=[3.2, 1.2] * columns,
                          wspace=0.05, hspace=0.35)
  for i, (title, shown, text) in enumerate(panels):
    row, column = divmod(i, columns)
    ax = fig.add_subplot(grid[row, 2 * column])
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    text_ax = fig.add_subplot(grid[row, 2 * column + 1])
    text_ax.text(0.05, 0.5, text, family="monospace", fontsize=10, va="center")
    text_ax.axis("off")
  fig.suptitle(f"3x3 filters applied per channel (lax.conv_general_dilated), {padding} "
               "padding", fontsize=12)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  fig.savefig(out_path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return out_path
