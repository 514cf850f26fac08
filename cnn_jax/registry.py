"""A tiny name -> constructor registry, used for models, datasets and tasks."""

import difflib
import fnmatch
import re
from typing import Callable, Iterator

from cnn_jax.errors import CnnJaxError


def natural_key(name: str) -> tuple:
  """Sort key that orders digit runs by value: ``resnet18 < resnet34 < resnet101``."""
  return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


class Registry:
  """Maps names to constructors; unknown names raise an error listing close matches.

  Example::

    MODELS = Registry("model")

    @MODELS.register("lenet5")
    def lenet5(**kw): ...

    MODELS.get("lenet5")
  """

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, Callable] = {}
    self._info: dict[str, dict] = {}

  def register(self, name: str, **info) -> Callable[[Callable], Callable]:
    """Decorator that registers ``fn`` under ``name``, with optional metadata ``info``."""

    def decorator(fn: Callable) -> Callable:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._entries[name] = fn
      self._info[name] = info
      return fn

    return decorator

  def get(self, name: str) -> Callable:
    """Returns the constructor registered as ``name`` or raises a helpful error."""
    if name not in self._entries:
      close = difflib.get_close_matches(str(name), self._entries, n=3, cutoff=0.5)
      hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
      raise CnnJaxError(
          f"Unknown {self.kind} {name!r}.{hint} Known {self.kind}s: "
          f"{', '.join(self.names())}.")
    return self._entries[name]

  def info(self, name: str) -> dict:
    """The metadata given at registration (e.g. ``input_shape``); empty if none."""
    self.get(name)
    return self._info[name]

  def names(self, pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (e.g. ``"resnet*"``), in natural
    order (:func:`natural_key`)."""
    return sorted((n for n in self._entries if fnmatch.fnmatch(n, pattern)), key=natural_key)

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())
