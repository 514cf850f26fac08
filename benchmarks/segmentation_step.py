"""Segmentation training-step throughput: one loop step (forward, backward, Adam update) of
the ``segmentation`` task on synthetic 5-class images, for the networks of the shapes
experiments (``experiments/shapes_unet.py`` and ``shapes_fcn.py``, any ``model.name``).

  python benchmarks/segmentation_step.py [--experiments shapes_unet.py,shapes_fcn.py]
      [--models fcn8s_resnet18,fcn32s_resnet18] [--batch-size 32] [--steps 5]

Prints one JSON object: per network the compile time, the median step time over
``--repeats`` rounds and the images per second.
"""

import argparse
import json
import os
import platform
import statistics
import time

import jax
import numpy as np

from cnn_jax import config as config_lib
from cnn_jax.data import PreparedData
from cnn_jax.tasks.segmentation import SegmentationTask
from cnn_jax.train import optim
from cnn_jax.train.loop import make_train_step
from cnn_jax.train.session import state_initializer, train_batch_spec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASS_NAMES = ["background", "circle", "square", "triangle", "star"]


def bench(experiment: str, model_name: str | None, args) -> dict:
  """Times the jitted loop step of ``experiment``'s network (or ``model_name``)."""
  config = config_lib.load_config(os.path.join(REPO, "experiments", experiment))
  if model_name:
    config.model.name = model_name
  size = config.dataset.image_size
  rng = np.random.default_rng(0)
  arrays = {"image": rng.random((args.batch_size, size, size, 3), np.float32),
            "mask": rng.integers(len(CLASS_NAMES), size=(args.batch_size, size, size),
                                 dtype=np.int32)}
  data = PreparedData.synthetic((size, size, 3), CLASS_NAMES, mask=arrays["mask"][:1])
  task = SegmentationTask(config, data)
  networks = task.build_networks(lambda section: optim.make_optimizer(
      section, optim.make_schedule(config.schedule, section.learning_rate, 1, 1)))
  init, _ = state_initializer(task, networks, 0, train_batch_spec(arrays, args.batch_size))
  state = jax.jit(init)()
  step = jax.jit(make_train_step(task), donate_argnums=0)
  batch = jax.device_put(arrays)
  start = time.perf_counter()
  state = jax.block_until_ready(step(state, batch))
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.steps):
      state = step(state, batch)
    jax.block_until_ready(state)
    times.append((time.perf_counter() - start) / args.steps)
  median = statistics.median(times)
  return {"experiment": experiment, "model": config.model.name,
          "image_shape": [size, size, 3], "batch_size": args.batch_size,
          "compile_s": round(compile_s, 2), "step_ms": round(1000 * median, 1),
          "images_per_s": round(args.batch_size / median, 1)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--experiments", default="shapes_unet.py",
                      help="experiment files, comma-separated")
  parser.add_argument("--models", default="", help="model names to time on the last "
                      "experiment instead of its own, comma-separated")
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
  parser.add_argument("--repeats", type=int, default=3, help="timed rounds (the median)")
  args = parser.parse_args()
  experiments = args.experiments.split(",")
  runs = [(e, None) for e in experiments[:-1]] + (
      [(experiments[-1], m) for m in args.models.split(",")] if args.models
      else [(experiments[-1], None)])
  results = [bench(e, m, args) for e, m in runs]
  print(json.dumps({"device": jax.devices()[0].device_kind, "platform": platform.processor()
                    or platform.machine(), "cpu_count": os.cpu_count(),
                    "load_average": os.getloadavg()[0], "results": results}, indent=1))


if __name__ == "__main__":
  main()
