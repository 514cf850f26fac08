"""Training-step time of the transfer study's network with the base frozen, with only its
last stage and head trained, and fully fine-tuned: the same loop step of the
``classification`` task (``optimizer.param_groups`` as in ``experiments/cifar_catdog_*.py``)
on synthetic 32x32 RGB batches, the three timed in turns (interleaved rounds) in one process
so that machine noise hits all of them alike.

  python benchmarks/transfer_step.py [--batch-size 64] [--steps 10] [--repeats 5]

Prints one JSON object: per setting the trainable parameters, the compile time and the median
step time; and each setting's step time relative to full fine-tuning.
"""

import argparse
import json
import platform
import statistics
import time

import jax
import numpy as np

from cnn_jax.data import PreparedData
from cnn_jax.tasks.classification import ClassificationTask
from cnn_jax.train import optim
from cnn_jax.train.loop import make_train_step
from cnn_jax.train.session import state_initializer, train_batch_spec
from cnn_jax.transfer import param_groups
from cnn_jax.transfer.study import parameter_counts, step_config

SETTINGS = {
    "full_finetune": (),
    "last_stage_and_head": (("head", 1.0), ("stage-1", 1.0), ("*", "frozen")),
    "frozen_base": (("head", 1.0), ("*", "frozen")),
}
IMAGE_SHAPE = (32, 32, 3)


def build(rules, batch_size: int):
  """``(jitted step, state, batch, trainable params)`` for one setting."""
  config = step_config("1_scratch")
  config.optimizer.param_groups = rules
  rng = np.random.default_rng(0)
  arrays = {"image": rng.random((batch_size, *IMAGE_SHAPE), np.float32),
            "label": rng.integers(2, size=batch_size, dtype=np.int32)}
  task = ClassificationTask(config, PreparedData.synthetic(IMAGE_SHAPE, ["cat", "dog"],
                                                           label=arrays["label"][:1]))

  def make(multiplier: float = 1.0):
    return optim.make_optimizer(config.optimizer, optim.make_schedule(
        config.schedule, config.optimizer.learning_rate * multiplier, 100, 1000))

  networks = task.build_networks(lambda section: param_groups.grouped_optimizer(
      rules, config.model.name, make) if rules else make())
  init, _ = state_initializer(task, networks, 0, train_batch_spec(arrays, batch_size))
  trainable, _ = parameter_counts(config, IMAGE_SHAPE, 2)
  return (jax.jit(make_train_step(task), donate_argnums=0), jax.jit(init)(),
          jax.device_put(arrays), trainable)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
  parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (the median)")
  args = parser.parse_args()
  runs, results = {}, {}
  for name, rules in SETTINGS.items():
    step, state, batch, trainable = build(rules, args.batch_size)
    start = time.perf_counter()
    state = jax.block_until_ready(step(state, batch))
    results[name] = {"trainable_params": trainable,
                     "compile_s": round(time.perf_counter() - start, 2)}
    runs[name] = [step, state, batch, []]
  for _ in range(args.repeats):
    for name, run in runs.items():
      step, state, batch, times = run
      start = time.perf_counter()
      for _ in range(args.steps):
        state = step(state, batch)
      jax.block_until_ready(state)
      times.append((time.perf_counter() - start) / args.steps)
      run[1] = state
  full = statistics.median(runs["full_finetune"][3])
  for name, (_, _, _, times) in runs.items():
    median = statistics.median(times)
    results[name].update(step_ms=round(1000 * median, 2),
                         step_ms_range=[round(1000 * min(times), 2), round(1000 * max(times), 2)],
                         relative_to_full=round(median / full, 3),
                         images_per_s=round(args.batch_size / median, 1))
  print(json.dumps({"device": jax.devices()[0].device_kind, "cpu": platform.processor(),
                    "batch_size": args.batch_size, "steps": args.steps,
                    "repeats": args.repeats, "settings": results}, indent=1))


if __name__ == "__main__":
  main()
