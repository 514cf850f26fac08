"""Train-step time with cnn_jax's BatchNorm (its own training-mode backward pass, the
default) against flax's ``nn.BatchNorm`` differentiated by JAX
(``normalization.autodiff_batch_norm``): the loop's step of ``bench`` on synthetic data, the
two compiled in one process and timed in turns (interleaved rounds), so that machine noise
hits both alike.

  python benchmarks/batch_norm_step.py [--models cifar_resnet20:128,resnet18:16] \\
      [--rounds 6] [--steps 3]

Prints one JSON object: per model and batch size the median step time of each and the
speed-up (autodiff time / custom time per round: median, min, max).
"""

import argparse
import json
import platform

import jax
import numpy as np

from cnn_jax.bench import StepTimer
from cnn_jax.models.normalization import autodiff_batch_norm


def compare(model: str, batch_size: int, rounds: int, steps: int) -> dict:
  with autodiff_batch_norm():
    timers = {"autodiff": StepTimer(model, batch_size=batch_size)}
  timers["custom"] = StepTimer(model, batch_size=batch_size)
  times = {name: [] for name in timers}
  for timer in timers.values():
    timer.time(1)  # the first run of a compiled step allocates
  for _ in range(rounds):
    for name, timer in timers.items():
      times[name].append(timer.time(steps))
  speedup = np.array(times["autodiff"]) / np.array(times["custom"])
  return {"model": model, "batch_size": batch_size,
          "step_ms": {name: round(1000 * float(np.median(t)), 1) for name, t in times.items()},
          "speedup": {"median": round(float(np.median(speedup)), 3),
                      "min": round(float(speedup.min()), 3),
                      "max": round(float(speedup.max()), 3)}}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="cifar_resnet20:128,resnet18:16",
                      help="comma-separated MODEL:BATCH_SIZE")
  parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
  parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
  args = parser.parse_args()
  results = []
  for item in args.models.split(","):
    model, _, batch = item.partition(":")
    results.append(compare(model, int(batch or 128), args.rounds, args.steps))
  print(json.dumps({"device": jax.devices()[0].device_kind, "cpu": platform.processor(),
                    "jax": jax.__version__, "rounds": args.rounds, "steps": args.steps,
                    "results": results}, indent=1))


if __name__ == "__main__":
  main()
