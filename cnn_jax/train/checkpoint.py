"""Checkpoints with orbax: train state + data-iterator state + metadata + checksums.

Kept: the last ``keep`` checkpoints plus the best one by a validation metric (the metrics
passed to :meth:`Checkpoints.save` are written with the step, so the best one survives
restarts; steps saved without metrics never evict it). Saves are asynchronous; a step is
only visible once orbax has finished writing it, so a run killed mid-save resumes from the
previous step.

Every step also stores a sha256 of each saved array and of the two JSON items. A step
that cannot be read back (truncated, zeroed or deleted files) or whose values do not match
their checksums is moved aside to ``<directory>/corrupt/<step>`` (kept for inspection,
never deleted) and the next older step is restored; the run can then save that step
number again. A state holding NaN or Inf is refused (:class:`NonFiniteError`), so every
kept checkpoint is finite.
"""

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from cnn_jax.errors import CnnJaxError, ConfigError, NonFiniteError

log = logging.getLogger(__name__)

CORRUPT_DIR = "corrupt"
CHECKSUMS_ITEM = "checksums"


class UnreadableStepError(Exception):
  """A saved step that cannot be restored as it was written; the message says why."""


def host_leaves(tree) -> list[tuple[str, np.ndarray]]:
  """``(key path, host copy)`` of every array leaf of ``tree``.

  A leaf spread over several processes contributes the copy this process holds (the train
  state is replicated, so that is the whole array).
  """
  leaves = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaf = leaf.addressable_data(0)
    leaves.append((jax.tree_util.keystr(path), np.asarray(leaf)))
  return leaves


def array_digest(array: np.ndarray) -> str:
  """sha256 over an array's dtype, shape and bytes (hex)."""
  digest = hashlib.sha256(f"{array.dtype.name}{list(array.shape)}".encode())
  digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()


def json_digest(value) -> str:
  """sha256 of a JSON-ready value, independent of key order (hex)."""
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def checksums(state, data_state: dict, meta: dict) -> dict:
  """``{"state": {key path: sha256}, "data": sha256, "meta": sha256}`` of one step."""
  return {"state": {path: array_digest(x) for path, x in host_leaves(state)},
          "data": json_digest(data_state), "meta": json_digest(meta)}


def _key_name(key):
  """The field name, dict key or index that a ``jax.tree_util`` path entry stands for."""
  for attr in ("name", "key", "idx"):
    if hasattr(key, attr):
      return getattr(key, attr)
  raise KeyError(key)


def _child(node, key):
  return getattr(node, key.name) if hasattr(key, "name") else node[_key_name(key)]


def state_part(state, path: tuple) -> str:
  """The part of ``state`` that the leaf at ``path`` belongs to: the path down to the last
  field of a dataclass on the way (``params``, ``opt_state``, ``nets.net.params``)."""
  node, end = state, 1
  for i, key in enumerate(path):
    if dataclasses.is_dataclass(node):
      end = i + 1
    try:
      node = _child(node, key)
    except (AttributeError, KeyError, IndexError, TypeError):
      break
  return ".".join(str(_key_name(key)) for key in path[:end])


def nonfinite_parts(state) -> list[str]:
  """The parts of ``state`` (see :func:`state_part`) with a NaN or Inf floating value."""
  parts = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    if not jax.dtypes.issubdtype(leaf.dtype, np.inexact):
      continue
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaf = leaf.addressable_data(0)
    if not np.isfinite(np.asarray(leaf, np.float32)).all():
      part = state_part(state, path)
      if part not in parts:
        parts.append(part)
  return parts


def _root_message(error: BaseException) -> str:
  """The first line of the innermost cause of ``error`` (orbax's outer messages print
  TensorStore objects, the innermost one says what failed)."""
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  text = str(error).strip() or type(error).__name__
  return text.splitlines()[0][:240]


def os_error_text(error: BaseException) -> str | None:
  """``"<path>: <strerror>"`` (or just the strerror) of the OSError behind ``error``,
  found in its chain of causes or in a TensorStore message; None if it is not one."""
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.strerror:
      return f"{seen.filename}: {seen.strerror}" if seen.filename else seen.strerror
    match = re.search(r"os_error_code='(\d+)'|\[OS error (\d+)", str(seen))
    if match:
      paths = re.findall(r'"(/[^"]+)"', str(seen))
      text = os.strerror(int(match.group(1) or match.group(2)))
      return f"{paths[-1]}: {text}" if paths else text
    seen = seen.__cause__ or seen.__context__
  return None


class Checkpoints:
  """A thin wrapper over ``ocp.CheckpointManager`` for one run directory."""

  def __init__(self, directory: str, keep: int = 3, best_metric: str | None = "val_accuracy",
               best_mode: str = "max", read_only: bool = False):
    if best_mode not in ("min", "max"):
      raise ConfigError(f"train.best_mode must be 'min' or 'max', got {best_mode!r}.")
    self.directory = os.path.abspath(directory)
    self.best_metric, self.best_mode, self.read_only = best_metric, best_mode, read_only
    keep_policies = [policies.LatestN(n=max(keep, 1))]
    best_options = {}
    if best_metric:
      metric = lambda metrics: metrics[best_metric]  # noqa: E731
      keep_policies.append(policies.BestN(
          get_metric_fn=metric, reverse=(best_mode == "min"), n=1,
          keep_checkpoints_without_metrics=False))
      best_options = {"best_fn": metric, "best_mode": best_mode}  # metrics go to disk
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep_policies),
        create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only,
        **best_options)
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(), CHECKSUMS_ITEM: ocp.JsonCheckpointHandler()}
    with self._write_errors("open"):
      self.manager = ocp.CheckpointManager(self.directory, options=options,
                                           item_handlers=handlers)

  @contextlib.contextmanager
  def _write_errors(self, what: str):
    """Turns a failed disk write (full, read-only, file too large) into one CnnJaxError."""
    try:
      yield
    except CnnJaxError:
      raise
    except Exception as e:  # orbax wraps OS errors in its own and TensorStore's exceptions
      text = os_error_text(e)
      if text is None:
        raise
      raise CnnJaxError(f"Cannot {what} checkpoints in {self.directory}: {text}. Free disk "
                        "space or use a writable --workdir, then repeat the command to "
                        "resume.") from None

  def save(self, step: int, state, data_state: dict, meta: dict, metrics: dict | None = None):
    """Starts an async save of ``state`` (a pytree of arrays), two JSON items and checksums.

    Args:
      metrics: the validation metrics of an epoch-end step (they choose the best
        checkpoint); None for steps in the middle of an epoch.

    Raises:
      NonFiniteError: ``state`` holds NaN or Inf (nothing is written).
      ConfigError: ``metrics`` lacks ``best_metric``.
      CnnJaxError: the disk refused a write (of this or of the previous async save).
    """
    bad = nonfinite_parts(state)
    if bad:
      kept = self.steps()
      raise NonFiniteError(
          f"The train state at step {step} has NaN or Inf values in {', '.join(bad)}; it was "
          "not saved. " + (f"The newest kept checkpoint, step {kept[-1]}, is finite. " if kept
                           else "No checkpoint was kept. ")
          + "Lower optimizer.learning_rate or add warmup.")
    if metrics is not None and self.best_metric and self.best_metric not in metrics:
      raise ConfigError(f"train.best_metric={self.best_metric!r} is not among the validation "
                        f"metrics ({', '.join(sorted(metrics))}); set it to one of them.")
    sums = checksums(state, data_state, meta)
    with self._write_errors(f"save step {step} of the"):
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
          meta=ocp.args.JsonSave(meta), **{CHECKSUMS_ITEM: ocp.args.JsonSave(sums)}),
          metrics=metrics if self.best_metric else None, force=True)

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def best_step(self) -> int | None:
    """The kept step with the best ``best_metric`` (None if no step has metrics)."""
    return self.manager.best_step() if self.best_metric else None

  def _restore_step(self, step: int, abstract):
    """``(state, data_state, meta)`` of ``step``, verified against its checksums.

    Raises:
      UnreadableStepError: the files are damaged or do not match their checksums.
      CnnJaxError: the step is intact but holds a differently shaped state.
    """
    try:
      saved = self.manager.item_metadata(step)["state"]
    except Exception as e:  # unreadable step metadata
      raise UnreadableStepError(f"its metadata cannot be read ({_root_message(e)})") from None
    if saved is None:
      raise UnreadableStepError("its state/_METADATA file is missing or unreadable")
    saved_shapes = sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(saved.tree)
                          if hasattr(leaf, "shape"))
    expected_shapes = sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(abstract))
    if saved_shapes != expected_shapes:
      raise CnnJaxError(f"Checkpoint step {step} in {self.directory} holds a state of a "
                        "different model or layout than this config builds; use a new "
                        "--workdir (or the code and config that wrote it).")
    verify = os.path.isdir(os.path.join(self.directory, str(step), CHECKSUMS_ITEM))
    items = {"state": ocp.args.StandardRestore(abstract), "data": ocp.args.JsonRestore(),
             "meta": ocp.args.JsonRestore()}
    if verify:  # steps written before checksums existed are restored unverified
      items[CHECKSUMS_ITEM] = ocp.args.JsonRestore()
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # TensorStore, JSON and file errors of damaged files
      raise UnreadableStepError(f"its files cannot be read: {_root_message(e)}") from None
    if verify:
      self._verify(restored)
    return restored["state"], restored["data"], restored["meta"]

  @staticmethod
  def _verify(restored) -> None:
    expected = restored[CHECKSUMS_ITEM]
    actual = checksums(restored["state"], restored["data"], restored["meta"])
    changed = [path for path, digest in actual["state"].items()
               if expected["state"].get(path) != digest]
    changed += [name for name in ("data", "meta") if expected[name] != actual[name]]
    if changed or set(expected["state"]) != set(actual["state"]):
      raise UnreadableStepError(
          f"its values do not match the checksums saved with it ({', '.join(changed[:3])}"
          f"{' ...' if len(changed) > 3 else ''}): the files changed after saving")

  def _set_aside(self, step: int, reason: str) -> None:
    """Moves an unreadable step to ``corrupt/<step>`` (``corrupt/<step>.<n>`` if taken)."""
    if self.read_only:
      log.warning("checkpoint step %d in %s is unreadable: %s; using an older step", step,
                  self.directory, reason)
      return
    if jax.process_index() == 0:
      target = os.path.join(self.directory, CORRUPT_DIR, str(step))
      n = 0
      while os.path.exists(target):
        n += 1
        target = os.path.join(self.directory, CORRUPT_DIR, f"{step}.{n}")
      with self._write_errors(f"move step {step} aside in the"):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)), target)
      log.warning("checkpoint step %d is unreadable: %s; moved it to %s and resuming from an "
                  "older step", step, reason, target)
    self.manager.reload()

  def restore(self, template, step: int | None = None):
    """Restores ``(state, data_state, meta, step)``.

    Args:
      template: a state pytree (arrays or ``jax.ShapeDtypeStruct`` with shardings) that
        gives the structure, dtypes and placement to restore into.
      step: a specific step; None means the newest readable one (unreadable newer steps
        are moved aside). Returns None when there is no (readable) checkpoint at all.
    """
    if step is not None and step not in self.steps():
      raise CnnJaxError(f"No checkpoint for step {step} in {self.directory}; "
                        f"available steps: {self.steps()}.")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    for candidate in [step] if step is not None else sorted(self.steps(), reverse=True):
      try:
        return (*self._restore_step(candidate, abstract), candidate)
      except UnreadableStepError as e:
        if step is not None:
          raise CnnJaxError(f"Checkpoint step {candidate} in {self.directory} is unreadable: "
                            f"{e}.") from None
        self._set_aside(candidate, str(e))
    return None

  def wait(self):
    """Blocks until the pending save is written; its disk errors raise a CnnJaxError."""
    with self._write_errors("finish writing the"):
      self.manager.wait_until_finished()

  def close(self):
    with self._write_errors("finish writing the"):
      self.manager.close()
