"""User-facing errors.

Library code raises :class:`CnnJaxError` (or a subclass) for anything the user can fix:
a bad config key, an unknown model name, a missing dataset, images of the wrong shape.
``cnn_jax.main`` prints the message without a traceback and exits with status 2.
"""


class CnnJaxError(Exception):
  """An error caused by user input; the message says what was wrong and how to fix it."""


class ConfigError(CnnJaxError):
  """A config file or override is invalid."""


class DataError(CnnJaxError):
  """A dataset is missing, malformed or does not fit the model."""


class ShapeError(CnnJaxError):
  """An input has a shape that the model cannot take."""


class NonFiniteError(CnnJaxError):
  """Training produced NaN or Inf values (in the loss or the train state)."""
