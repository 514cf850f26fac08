"""How far XLA:CPU compile options move a train step's result: the default compilation's
state after N SGD steps against the same steps compiled with each option set.

A yardstick for "is this option correct?": batch-norm statistics and momentum traces of
near-cancelling gradients amplify last-bit differences over steps, so an option is judged
against another exact implementation (``ynn_off``: XLA's own emitters instead of YNNPACK's
kernels, a different summation order), one step and a few steps in.

  python benchmarks/cpu_options_numerics.py --model cifar_resnet20 --steps 1,5 --batch-size 32

Prints one JSON document: per option set and step count, the worst leaf's relative
difference ``|a - b| / |a|`` (norms over the leaf), that leaf's path and the median over
leaves (parameters, batch statistics, optimizer state).
"""

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cnn_jax import bench  # noqa: E402
import xla_cpu_options  # noqa: E402  (benchmarks/, this script's folder)

OPTION_SETS = {"ynn_eltwise": xla_cpu_options.YNN_ELTWISE, "ynn_off": xla_cpu_options.YNN_OFF}


def final_nets(model: str, batch_size: int, steps: int, options: dict | None) -> dict:
  """The networks' state after ``steps`` train steps from bench's fixed start and batch."""
  timer = bench.StepTimer(model, batch_size=batch_size, donate=False, compiler_options=options)
  for _ in range(steps):
    timer.state = timer.compiled(timer.state, timer.batch)
  return jax.device_get(timer.state.nets)


def differences(reference: dict, other: dict) -> dict:
  """Worst and median relative difference over the floating-point leaves."""
  rows = []
  for (path, a), b in zip(jax.tree.leaves_with_path(reference), jax.tree.leaves(other)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size and np.issubdtype(a.dtype, np.floating):
      rows.append((float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30)),
                   jax.tree_util.keystr(path)))
  worst = max(rows)
  return {"worst_relative": worst[0], "worst_leaf": worst[1],
          "median_relative": float(np.median([r[0] for r in rows]))}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="cifar_resnet20")
  parser.add_argument("--steps", default="1,5", help="step counts, comma-separated")
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--out", help="also write the JSON here")
  args = parser.parse_args(argv)
  results = []
  for steps in map(int, args.steps.split(",")):
    reference = final_nets(args.model, args.batch_size, steps, None)
    for name, options in OPTION_SETS.items():
      other = final_nets(args.model, args.batch_size, steps, options)
      results.append({"options": name, "steps": steps, **differences(reference, other)})
  bench.print_report({**bench.environment(model=args.model, batch_size=args.batch_size),
                      "results": results}, args.out)


if __name__ == "__main__":
  main()
