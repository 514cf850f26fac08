"""DCGAN training-step throughput: one loop step (a discriminator update on a real and a
fake batch, then a generator update) of the ``gan`` task on synthetic images, for the
28x28x1, 32x32x3 and 64x64x3 networks of ``cnn_jax.tasks.gan.dcgan_config``.

  python benchmarks/dcgan_step.py [--batch-size 64] [--steps 20] [--sizes 28x1,32x3,64x3]
      [--upsample pixel_shuffle] [--widths 64,32]

Prints one JSON object: per shape the compile time, the median step time over
``--repeats`` rounds and the images per second (real images consumed per second).
"""

import argparse

import numpy as np

from cnn_jax import bench
from cnn_jax.data import PreparedData
from cnn_jax.data.presets import dataset_preset
from cnn_jax.tasks.gan import GANTask, dcgan_config


def bench_shape(side: int, channels: int, args) -> dict:
  """Times the jitted loop step of a DCGAN on ``[batch, side, side, channels]`` images."""
  widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else None
  config = dcgan_config(dataset_preset("digits"), batch_size=args.batch_size, widths=widths)
  config.model.upsample = args.upsample
  data = PreparedData.synthetic((side, side, channels), [str(i) for i in range(10)])
  images = np.random.default_rng(0).random((args.batch_size, side, side, channels), np.float32)
  return {"image_shape": [side, side, channels],
          **bench.time_task_step(GANTask(config, data), {"image": images}, steps=args.steps,
                                 repeats=args.repeats)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
  parser.add_argument("--repeats", type=int, default=3, help="timed rounds (the median)")
  parser.add_argument("--sizes", default="28x1,32x3,64x3", help="SIDExCHANNELS, comma-separated")
  parser.add_argument("--upsample", default="pixel_shuffle",
                      help="generator upsampling (see cnn_jax/models/upsample.py)")
  parser.add_argument("--widths", default="", help="generator widths (default: per size)")
  args = parser.parse_args()
  results = [bench_shape(*(int(v) for v in size.split("x")), args)
             for size in args.sizes.split(",")]
  bench.print_report(bench.environment(upsample=args.upsample, results=results), indent=1)


if __name__ == "__main__":
  main()
