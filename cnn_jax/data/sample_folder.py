"""A small image folder of real photos, made offline from scikit-learn's two bundled
sample photographs (``china.jpg`` and ``flower.jpg``, 427x640 RGB).

Each photo is cut into random square patches of varying size, saved as JPEG under
``<root>/<photo>/``: a two-class folder dataset in the layout users bring their own
photos in (one subfolder per class), for examples, tests and benchmarks.
"""

import os

import numpy as np
from PIL import Image


def make_sample_folder(root: str, per_class: int = 60, seed: int = 0) -> str:
  """Writes ``per_class`` JPEG patches (48..160 px) of each sklearn photo under ``root``.

  Returns ``root``. Existing files are overwritten; nothing else in ``root`` is touched.
  """
  from sklearn.datasets import load_sample_images
  sample = load_sample_images()
  rng = np.random.default_rng(seed)
  for name, photo in zip(sample.filenames, sample.images):
    label = os.path.splitext(os.path.basename(name))[0]
    os.makedirs(os.path.join(root, label), exist_ok=True)
    h, w = photo.shape[:2]
    for i in range(per_class):
      size = int(rng.integers(48, 161))
      top, left = int(rng.integers(0, h - size)), int(rng.integers(0, w - size))
      Image.fromarray(photo[top:top + size, left:left + size]).save(
          os.path.join(root, label, f"{i:04d}.jpg"), quality=90)
  return root
