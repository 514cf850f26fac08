"""Predictions of a trained run on a user's own image: ``python -m cnn_jax predict``.

The run is restored as the eval command does (its config, data and checkpoint); the image
is read with Pillow, converted to the run's channels, resized to the run's input size and
handed to the task's ``predict_image`` hook, which draws the prediction (a segmentation
mask, detected boxes) into a PNG.
"""

import numpy as np

from cnn_jax.errors import DataError


def read_image(path: str, shape: tuple[int, int, int]) -> np.ndarray:
  """The image file at ``path`` as float32 ``[H, W, C]`` in [0, 1] for ``shape = (H, W, C)``.

  Colour images become grey for ``C = 1`` and grey ones RGB for ``C = 3``; the image is
  resized (bilinear, antialiased when shrinking) to ``H x W`` without keeping its aspect
  ratio, as the training images were.

  Raises:
    DataError: when the file is missing or is not an image Pillow can read.
  """
  from PIL import Image, UnidentifiedImageError
  height, width, channels = shape
  if channels not in (1, 3):
    raise DataError(f"the run takes {channels}-channel images; predict reads grey (1) or RGB "
                    "(3) images only.")
  try:
    with Image.open(path) as image:
      image = image.convert("L" if channels == 1 else "RGB")
      image = image.resize((width, height), Image.Resampling.BILINEAR)
  except FileNotFoundError:
    raise DataError(f"image file {path!r} does not exist.") from None
  except (UnidentifiedImageError, OSError) as e:
    raise DataError(f"cannot read {path!r} as an image ({e}); give a PNG or JPEG file.") from None
  pixels = np.asarray(image, np.float32) / 255.0
  return pixels.reshape(height, width, channels)


def predict(workdir: str, image_path: str, out_path: str, checkpoint: str = "best") -> str:
  """Draws the prediction of the run in ``workdir`` (its ``checkpoint``: ``"best"``,
  ``"latest"`` or a step) for the image file ``image_path`` into the PNG ``out_path``.

  Returns:
    ``out_path``.

  Raises:
    CnnJaxError: for a run without checkpoints, an unreadable image, or a task that
      cannot draw predictions.
  """
  from cnn_jax.train.session import load_run
  session, state, _, _ = load_run(workdir, checkpoint)
  image = read_image(image_path, session.data.image_shape)
  return session.task.predict_image(state, image, out_path)
