"""Forward + backward time of the three ``Upsample`` methods at decoder-like shapes.

For each shape ``[B, H, W, C] -> [B, 2H, 2W, F]`` every method is compiled, then the
methods are timed in alternating rounds (so that load from other processes hits them
alike); a step is the gradient of ``mean(y ** 2)`` with respect to the parameters and the
input, as in a decoder's backward pass. XLA's FLOP count of the compiled step is the useful
work: a stride-2 transposed convolution does a quarter of the others' multiply-adds (and
has a quarter of ``pixel_shuffle``'s parameters), so time per FLOP is what differs.

Usage::

  python benchmarks/upsampling.py --rounds 5 [--kernel-size 3] [--dtype float32] [--out f.json]

Prints one JSON document.
"""

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cnn_jax import bench  # noqa: E402
from cnn_jax.models.upsample import METHODS, Upsample  # noqa: E402

# (input [B, H, W, C], output features F): the output is [B, 2H, 2W, F]
SHAPES = (((32, 16, 16, 256), 128), ((16, 32, 32, 128), 64), ((8, 64, 64, 64), 32))


def compiled_step(method: str, in_shape: tuple, features: int, kernel_size: int, dtype: str):
  """The jitted forward+backward step of one method, compiled, and its arguments."""
  model = Upsample(features, method=method, kernel_size=kernel_size,
                   dtype=bench.DTYPES[dtype])
  x = jax.random.normal(jax.random.PRNGKey(0), in_shape, jnp.float32)
  params = jax.jit(model.init)(jax.random.PRNGKey(1), x)

  def loss(params, x):
    return jnp.mean(model.apply(params, x).astype(jnp.float32) ** 2)

  step = jax.jit(jax.grad(loss, argnums=(0, 1)))
  return step.lower(params, x).compile(), (params, x)


def time_steps(compiled, args, steps: int) -> float:
  start = time.perf_counter()
  jax.block_until_ready([compiled(*args) for _ in range(steps)])
  return (time.perf_counter() - start) / steps


def run(rounds: int, steps: int, kernel_size: int, dtype: str) -> list[dict]:
  results = []
  for in_shape, features in SHAPES:
    b, h, w, _ = in_shape
    steps_by_method = {m: compiled_step(m, in_shape, features, kernel_size, dtype)
                       for m in METHODS}
    for compiled, args in steps_by_method.values():
      time_steps(compiled, args, 1)  # warm-up
    seconds = {m: [] for m in METHODS}
    for _ in range(rounds):
      for m, (compiled, args) in steps_by_method.items():
        seconds[m].append(time_steps(compiled, args, steps))
    results.append({
        "input": list(in_shape), "output": [b, 2 * h, 2 * w, features],
        "ms_per_step": {m: bench.spread([s * 1e3 for s in v]) for m, v in seconds.items()},
        "gflops_per_step": {m: bench.compiled_flops(c) / 1e9
                            for m, (c, _) in steps_by_method.items()},
        "fastest": min(METHODS, key=lambda m: statistics.median(seconds[m])),
    })
  return results


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=3, help="steps per timing round")
  parser.add_argument("--kernel-size", type=int, default=3)
  parser.add_argument("--dtype", default="float32", choices=tuple(bench.DTYPES))
  parser.add_argument("--out", help="also write the JSON here")
  args = parser.parse_args(argv)
  report = bench.environment(
      kernel_size=args.kernel_size, dtype=args.dtype, rounds=args.rounds,
      steps_per_round=args.steps)
  report["results"] = run(args.rounds, args.steps, args.kernel_size, args.dtype)
  bench.print_report(report, args.out)


if __name__ == "__main__":
  main()
