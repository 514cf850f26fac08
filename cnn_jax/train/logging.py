"""Run outputs: ``metrics.jsonl`` (one JSON object per epoch), TensorBoard, progress bar."""

import json
import os
import time

from tqdm.auto import tqdm

METRICS_FILE = "metrics.jsonl"


def read_history(workdir: str) -> list[dict]:
  """The per-epoch rows of ``workdir/metrics.jsonl`` (empty if none yet)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class MetricsLog:
  """Appends per-epoch rows to ``metrics.jsonl`` and TensorBoard event files.

  On resume, rows written after the restored checkpoint's step are dropped, because
  the resumed run recomputes them (a kill can land between a log write and a save).
  """

  def __init__(self, workdir: str, resume_step: int, enabled: bool = True):
    """``enabled=False`` (processes other than 0) makes every method a no-op."""
    self.enabled = enabled
    if not enabled:
      return
    self.path = os.path.join(workdir, METRICS_FILE)
    rows = [r for r in read_history(workdir) if r["step"] <= resume_step]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, self.path)
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, row: dict) -> None:
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in row.items():
      if k not in ("epoch", "step") and isinstance(v, (int, float)):
        self.tb.add_scalar(k, v, row["step"])
    self.tb.flush()

  def close(self) -> None:
    if self.enabled:
      self.tb.close()


class Progress:
  """A tqdm bar over training steps showing loss, accuracy and images/s (ETA from tqdm)."""

  def __init__(self, total: int, initial: int, enabled: bool):
    self.bar = tqdm(total=total, initial=initial, disable=not enabled or None, unit="step",
                    dynamic_ncols=True)
    self.last_time, self.last_step = time.perf_counter(), initial

  def update(self, step: int, batch_size: int, metrics: dict | None = None) -> None:
    self.bar.update(step - self.bar.n)
    if metrics is not None:
      now = time.perf_counter()
      rate = (step - self.last_step) * batch_size / max(now - self.last_time, 1e-9)
      self.last_time, self.last_step = now, step
      self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.4f}",
                           img_s=f"{rate:.0f}")

  def write(self, text: str) -> None:
    self.bar.write(text)

  def close(self) -> None:
    self.bar.close()
