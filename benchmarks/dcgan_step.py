"""DCGAN training-step throughput: one loop step (a discriminator update on a real and a
fake batch, then a generator update) of the ``gan`` task on synthetic images, for the
28x28x1, 32x32x3 and 64x64x3 networks of ``cnn_jax.tasks.gan.dcgan_config``.

  python benchmarks/dcgan_step.py [--batch-size 64] [--steps 20] [--sizes 28x1,32x3,64x3]
      [--upsample pixel_shuffle] [--widths 64,32]

Prints one JSON object: per shape the compile time, the median step time over
``--repeats`` rounds and the images per second (real images consumed per second).
"""

import argparse
import json
import os
import platform
import statistics
import time

import jax
import numpy as np

from cnn_jax.data import PreparedData
from cnn_jax.data.presets import dataset_preset
from cnn_jax.tasks.gan import GANTask, dcgan_config
from cnn_jax.train import optim
from cnn_jax.train.loop import make_train_step
from cnn_jax.train.session import state_initializer, train_batch_spec


def bench_shape(side: int, channels: int, args) -> dict:
  """Times the jitted loop step of a DCGAN on ``[batch, side, side, channels]`` images."""
  widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else None
  config = dcgan_config(dataset_preset("digits"), batch_size=args.batch_size, widths=widths)
  config.model.upsample = args.upsample
  data = PreparedData.synthetic((side, side, channels), [str(i) for i in range(10)])
  task = GANTask(config, data)
  networks = task.build_networks(
      lambda section: optim.make_optimizer(section, optim.make_schedule(
          config.schedule, section.learning_rate, 1, 1)))
  spec = train_batch_spec({"image": np.zeros((1, side, side, channels), np.float32)},
                          args.batch_size)
  init, _ = state_initializer(task, networks, 0, spec)
  state = jax.jit(init)()
  step = jax.jit(make_train_step(task), donate_argnums=0)
  rng = np.random.default_rng(0)
  batch = {"image": jax.device_put(rng.random((args.batch_size, side, side, channels),
                                              np.float32))}
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
  return {"image_shape": [side, side, channels], "batch_size": args.batch_size,
          "compile_s": round(compile_s, 2), "step_ms": round(1000 * median, 2),
          "step_ms_min_max": [round(1000 * min(times), 2), round(1000 * max(times), 2)],
          "images_per_s": round(args.batch_size / median, 1)}


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
  print(json.dumps({"device": jax.devices()[0].device_kind, "platform": platform.processor()
                    or platform.machine(), "cpu_count": os.cpu_count(),
                    "load_average": os.getloadavg()[0], "upsample": args.upsample,
                    "results": results}, indent=1))


if __name__ == "__main__":
  main()
