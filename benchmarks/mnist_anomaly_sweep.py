"""One-class anomaly detection on MNIST, each digit in turn as the only normal class.

Trains ``experiments/mnist_anomaly.py`` once per digit (each a normal, resumable run in
``--workdir/digit_<d>``; finished ones are read back, not retrained) and prints JSON with
the ten test ROC AUCs (anomalous = every other digit), their mean, and the other metrics at
the mean + std threshold. Ruff et al. 2018 (Deep One-Class Classification, Table 1) report
convolutional-autoencoder baselines around 0.9 AUC for this protocol.

  CNN_JAX_DATA_DIR=../shared/data python benchmarks/mnist_anomaly_sweep.py \\
      --workdir runs/mnist_anomaly_sweep [--epochs 20] [--out sweep.json]
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cnn_jax import bench  # noqa: E402
from cnn_jax import config as config_lib  # noqa: E402
from cnn_jax.experiment import train  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="one sub-directory per normal digit")
  parser.add_argument("--epochs", type=int, default=0, help="0: the experiment's own")
  parser.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
  parser.add_argument("--out", help="also write the JSON here")
  args = parser.parse_args()
  rows = []
  for digit in [int(d) for d in args.digits.split(",")]:
    config = config_lib.load_config(os.path.join(REPO, "experiments", "mnist_anomaly.py"))
    overrides = [f"task.normal_classes={digit}", "train.progress=false"]
    if args.epochs:
      overrides.append(f"train.epochs={args.epochs}")
    config_lib.apply_overrides(config, overrides)
    start = time.perf_counter()
    test = train(config, os.path.join(args.workdir, f"digit_{digit}"))["test"]
    at = test["at_threshold"]
    rows.append({"normal_digit": digit, "auc": test["auc"],
                 "average_precision": test["average_precision"],
                 "precision": at["precision"], "recall": at["recall"], "f1": at["f1"],
                 "specificity": at["specificity"], "accuracy": at["accuracy"],
                 "wall_s": round(time.perf_counter() - start, 1)})
    print(json.dumps(rows[-1]), file=sys.stderr)
  result = {"rows": rows, "mean_auc": sum(r["auc"] for r in rows) / len(rows),
            "epochs": args.epochs or config.train.epochs}
  bench.print_report(result, args.out, indent=1)


if __name__ == "__main__":
  main()
