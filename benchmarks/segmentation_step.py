"""Segmentation training-step throughput: one loop step (forward, backward, Adam update) of
the ``segmentation`` task on synthetic 5-class images, for the networks of the shapes
experiments (``experiments/shapes_unet.py`` and ``shapes_fcn.py``, any ``model.name``).

  python benchmarks/segmentation_step.py [--experiments shapes_unet.py,shapes_fcn.py]
      [--models fcn8s_resnet18,fcn32s_resnet18] [--batch-size 32] [--steps 5]

Prints one JSON object: per network the compile time, the median step time over
``--repeats`` rounds and the images per second.
"""

import argparse
import os

import numpy as np

from cnn_jax import bench
from cnn_jax import config as config_lib
from cnn_jax.data import PreparedData
from cnn_jax.tasks.segmentation import SegmentationTask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASS_NAMES = ["background", "circle", "square", "triangle", "star"]


def bench_network(experiment: str, model_name: str | None, args) -> dict:
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
  return {"experiment": experiment, "model": config.model.name, "image_shape": [size, size, 3],
          **bench.time_task_step(SegmentationTask(config, data), arrays, steps=args.steps,
                                 repeats=args.repeats)}


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
  results = [bench_network(e, m, args) for e, m in runs]
  bench.print_report(bench.environment(results=results), indent=1)


if __name__ == "__main__":
  main()
