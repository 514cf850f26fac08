"""Run outputs: ``metrics.jsonl`` (one JSON object per epoch), TensorBoard, progress bar.

TensorBoard gets two runs, ``tensorboard/train`` and ``tensorboard/val``, so a training
and a validation curve of one quantity overlay in one chart (as Keras writes them): the
row key ``train_loss`` is tag ``loss`` in run ``train``, ``val_loss`` is tag ``loss`` in
run ``val``, other keys (``learning_rate``, ``epoch_time_s``) are tags of run ``train``.
"""

import json
import os
import time

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.summary import scalar
from tqdm.auto import tqdm

from cnn_jax.config import atomic_write

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
RUN_PREFIXES = {"train": "train_", "val": "val_"}
PROGRESS_METRICS = 3  # at most this many metrics in the progress bar, besides img/s


def read_history(workdir: str) -> list[dict]:
  """The per-epoch rows of ``workdir/metrics.jsonl`` (empty if none yet)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def tensorboard_run_and_tag(key: str) -> tuple[str, str]:
  """``("train", "loss")`` for row key ``train_loss``, ``("val", "loss")`` for
  ``val_loss``, ``("train", key)`` for any other key."""
  for run, prefix in RUN_PREFIXES.items():
    if key.startswith(prefix):
      return run, key[len(prefix):]
  return "train", key


class EventFiles:
  """One TensorBoard event file per run (``train``, ``val``), written synchronously.

  Each file starts with TensorBoard's restart marker (a ``SessionLog.START`` event at
  ``purge_step``, what ``SummaryWriter(purge_step=...)`` writes), so that readers drop the
  older files' scalars from ``purge_step`` on: the rows a resumed run recomputes.
  """

  def __init__(self, directory: str, purge_step: int):
    self.writers = {}
    for run in RUN_PREFIXES:
      os.makedirs(os.path.join(directory, run), exist_ok=True)
      self.writers[run] = EventsWriter(os.path.join(directory, run, "events"),
                                       f".{time.time_ns()}")
      self.writers[run].write_event(Event(step=purge_step, wall_time=time.time(),
                                          session_log=SessionLog(status=SessionLog.START)))
      self.writers[run].flush()

  def add_scalars(self, step: int, values: dict[str, float]) -> None:
    """Writes ``values`` (row keys) at ``step`` and flushes them to the files."""
    for key, value in values.items():
      run, tag = tensorboard_run_and_tag(key)
      self.writers[run].write_event(Event(step=step, wall_time=time.time(),
                                          summary=scalar(tag, value)))
    for writer in self.writers.values():
      writer.flush()

  def close(self) -> None:
    for writer in self.writers.values():
      writer.close()


class MetricsLog:
  """Appends per-epoch rows to ``metrics.jsonl`` and TensorBoard event files.

  On resume, rows written after the restored checkpoint's step are dropped, because
  the resumed run recomputes them (a kill can land between a log write and a save); the
  event files mark the same cut. A row is in the event files before it is in
  ``metrics.jsonl``, so a kill can never leave a logged row without its scalars.
  """

  def __init__(self, workdir: str, resume_step: int, enabled: bool = True):
    """``enabled=False`` (processes other than 0) makes every method a no-op."""
    self.enabled = enabled
    if not enabled:
      return
    self.path = os.path.join(workdir, METRICS_FILE)
    rows = [r for r in read_history(workdir) if r["step"] <= resume_step]
    with atomic_write(self.path) as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
    self.events = EventFiles(os.path.join(workdir, TENSORBOARD_DIR), purge_step=resume_step + 1)

  def write(self, row: dict) -> None:
    """Logs one row (``step`` and ``epoch`` plus numeric metrics); durable on return."""
    if not self.enabled:
      return
    self.events.add_scalars(row["step"], {
        k: v for k, v in row.items()
        if k not in ("epoch", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)})
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")

  def close(self) -> None:
    if self.enabled:
      self.events.close()


class Progress:
  """A tqdm bar over training steps showing up to three metrics and images/s."""

  def __init__(self, total: int, initial: int, enabled: bool):
    self.bar = tqdm(total=total, initial=initial, disable=not enabled or None, unit="step",
                    dynamic_ncols=True)
    self.last_time, self.last_step = time.perf_counter(), initial

  def update(self, step: int, batch_size: int, metrics: dict | None = None) -> None:
    """Moves the bar to ``step``; with ``metrics`` (e.g. ``{"loss": .., "accuracy": ..}``)
    also shows the first three of them and the images/s since the previous update."""
    self.bar.update(step - self.bar.n)
    if metrics is not None:
      now = time.perf_counter()
      rate = (step - self.last_step) * batch_size / max(now - self.last_time, 1e-9)
      self.last_time, self.last_step = now, step
      shown = {name: f"{float(value):.4g}"
               for name, value in list(metrics.items())[:PROGRESS_METRICS]}
      self.bar.set_postfix(**shown, img_s=f"{rate:.0f}")

  def write(self, text: str) -> None:
    self.bar.write(text)

  def close(self) -> None:
    self.bar.close()
