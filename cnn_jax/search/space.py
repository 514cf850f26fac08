"""Search spaces: which config keys a hyperparameter search varies, and over what values.

An experiment file offers ``get_search_space()`` next to ``get_config()``, returning
``{config key: dimension}``::

  from cnn_jax.search.space import choice, integer, log_uniform, uniform

  def get_search_space():
    return {"optimizer.learning_rate": log_uniform(1e-3, 0.3),
            "model.dropout_rate": uniform(0.0, 0.6),
            "model.base_channels": choice(8, 16, 32)}

Values are tried on a log scale where the scale matters more than the digits (learning
rates, weight decays: 1e-4, 1e-3, 1e-2, not 1, 2, 3). Each key is checked like a
``--config.KEY=VALUE`` override (a misspelled key or a value of the wrong type fails at
once, naming the closest keys), and every endpoint and choice is validated with the config.
"""

import dataclasses
import importlib.util
import math

import ml_collections
import numpy as np

from cnn_jax import config as config_lib
from cnn_jax.errors import ConfigError

KINDS = ("choice", "uniform", "log_uniform", "int", "log_int")


@dataclasses.dataclass(frozen=True)
class Dimension:
  """One searched key: ``choices`` (``kind="choice"``) or a range ``[low, high]``.

  ``grid`` is how many evenly spaced values (on the log scale for ``log_*`` kinds) a grid
  search tries of a range.
  """
  kind: str
  low: float | None = None
  high: float | None = None
  choices: tuple = ()
  grid: int = 3

  def grid_values(self) -> list:
    """The values a grid search tries."""
    if self.kind == "choice":
      return list(self.choices)
    if self.kind.startswith("log"):
      values = np.geomspace(self.low, self.high, self.grid)
    else:
      values = np.linspace(self.low, self.high, self.grid)
    if self.kind.endswith("int"):
      return sorted({int(round(v)) for v in values})
    return [float(v) for v in values]

  def suggest(self, trial, name: str):
    """The value an optuna trial draws for ``name``."""
    if self.kind == "choice":
      return trial.suggest_categorical(name, list(self.choices))
    if self.kind.endswith("int"):
      return trial.suggest_int(name, int(self.low), int(self.high), log=self.kind == "log_int")
    return trial.suggest_float(name, self.low, self.high, log=self.kind == "log_uniform")

  def describe(self) -> str:
    if self.kind == "choice":
      return f"choice{self.choices}"
    return f"{self.kind}({self.low:g}, {self.high:g})"


def choice(*values) -> Dimension:
  """One of ``values`` (numbers, strings, booleans or None)."""
  for value in values:
    if not (value is None or isinstance(value, (bool, int, float, str))):
      raise ConfigError(f"choice({', '.join(map(repr, values))}): {value!r} is not a number, "
                        "string, boolean or None; search a scalar config key instead.")
  if not values:
    raise ConfigError("choice() needs at least one value.")
  return Dimension("choice", choices=tuple(values))


def _range(kind: str, low, high, grid: int) -> Dimension:
  if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
    raise ConfigError(f"{kind}({low!r}, {high!r}): the range needs two numbers, low < high.")
  if kind.startswith("log") and low <= 0:
    raise ConfigError(f"{kind}({low!r}, {high!r}): a log scale needs low > 0; use "
                      f"{kind.replace('log_', '')}() for a range that includes 0.")
  if grid < 2:
    raise ConfigError(f"{kind}(..., grid={grid}): a grid needs at least 2 values.")
  return Dimension(kind, float(low), float(high), grid=grid)


def uniform(low: float, high: float, grid: int = 3) -> Dimension:
  """A float drawn uniformly from ``[low, high]``."""
  return _range("uniform", low, high, grid)


def log_uniform(low: float, high: float, grid: int = 3) -> Dimension:
  """A float whose logarithm is uniform over ``[log low, log high]`` (``low > 0``)."""
  return _range("log_uniform", low, high, grid)


def integer(low: int, high: int, log: bool = False, grid: int = 3) -> Dimension:
  """An integer in ``[low, high]``, uniform (or uniform in its logarithm with ``log``)."""
  if not (float(low).is_integer() and float(high).is_integer()):
    raise ConfigError(f"integer({low!r}, {high!r}): both ends must be integers.")
  return _range("log_int" if log else "int", low, high, grid)


def overrides(params: dict) -> list[str]:
  """``["key=value", ...]`` for a trial's parameters (as ``--config.key=value``)."""
  return [f"{key}={value if isinstance(value, str) else repr(value)}"
          for key, value in sorted(params.items())]


def apply(config: ml_collections.ConfigDict, params: dict) -> ml_collections.ConfigDict:
  """A copy of ``config`` with a trial's ``params`` applied as overrides and validated."""
  config = ml_collections.ConfigDict(config_lib.to_dict(config))
  config_lib.apply_overrides(config, overrides(params))
  config_lib.validate(config)
  return config


def check(space: dict, config: ml_collections.ConfigDict) -> dict[str, Dimension]:
  """Raises a ConfigError if a key of ``space`` is not in ``config`` or a value it can take
  (each choice, each end of a range) is not a valid value of that key."""
  if not isinstance(space, dict) or not space:
    raise ConfigError("get_search_space() must return a non-empty dict {config key: "
                      "dimension}, e.g. {'optimizer.learning_rate': log_uniform(1e-4, 1e-1)}.")
  for key, dim in space.items():
    if not isinstance(dim, Dimension):
      raise ConfigError(f"Search space key {key!r}: {dim!r} is not a dimension; use choice(), "
                        "uniform(), log_uniform() or integer() from cnn_jax.search.space.")
    current = config_lib.flat_items(config).get(key)
    if dim.kind in ("uniform", "log_uniform") and type(current) is int:
      raise ConfigError(f"Search space {key}={dim.describe()}: {key} is an integer "
                        f"({current}); use integer(low, high) for it.")
    values = dim.choices if dim.kind == "choice" else (dim.low, dim.high)
    for value in values:
      try:
        apply(config, {key: int(value) if dim.kind.endswith("int") else value})
      except ConfigError as e:
        raise ConfigError(f"Search space {key}={dim.describe()}: {e}") from None
  return dict(space)


def load(path: str, config: ml_collections.ConfigDict) -> dict[str, Dimension]:
  """The checked ``get_search_space()`` of the experiment file ``path`` (``FILE.py[:VARIANT]``)."""
  file = path.rsplit(":", 1)[0] if ".py:" in path else path
  spec = importlib.util.spec_from_file_location("_cnn_jax_search_space", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)  # load_config has imported it once already, so it imports
  if not hasattr(module, "get_search_space"):
    raise ConfigError(f"{file} has no get_search_space(); add one returning {{config key: "
                      "dimension}} (see cnn_jax/search/space.py).")
  return check(module.get_search_space(), config)


def grid_size(space: dict[str, Dimension]) -> int:
  """How many points the grid of ``space`` has."""
  return math.prod(len(dim.grid_values()) for dim in space.values())
