"""The benchmark: fields present and sane, FLOPs near an analytic count, clear errors."""

import json
import types

import jax
import pytest

from cnn_jax import bench, main
from cnn_jax.errors import CnnJaxError

BATCH = 16


def lenet5_forward_flops(batch: int, channels: int = 1) -> int:
  """2 x multiply-adds of LeNet-5's convolutions and dense layers (pools ignored)."""
  macs = (28 * 28 * 6 * 5 * 5 * channels  # C1: 5x5 conv, 6 maps of 28x28
          + 10 * 10 * 16 * 5 * 5 * 6      # C3: 5x5 conv, 16 maps of 10x10
          + 120 * 5 * 5 * 16              # C5: 5x5 conv to 1x1x120
          + 120 * 84 + 84 * 10)           # F6 and the output layer
  return 2 * macs * batch


@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lenet5_fields_are_sane(mode, dtype):
  # All 8 fake devices: the batch is sharded and FLOPs are summed over devices.
  result = bench.benchmark("lenet5", batch_size=BATCH, image_size=32, channels=1, mode=mode,
                           dtype=dtype, steps=2, warmup=1, repeats=3, peak_tflops=2.0)
  json.dumps(result)  # serializable
  assert result["num_devices"] == 8 and result["params"] == 61706
  for key in ("images_per_s", "ms_per_step"):
    spread = result[key]
    assert 0 < spread["min"] <= spread["median"] <= spread["max"]
  # an odd number of rounds: both medians are the same round's, exactly reciprocal (with 2
  # the medians are means of two rounds and differ by as much as the rounds do under load)
  assert result["images_per_s"]["median"] == pytest.approx(
      BATCH * 1e3 / result["ms_per_step"]["median"], rel=1e-9)
  assert result["lower_s"] > 0 and result["compile_s"] > 0 and result["achieved_tflops"] > 0
  # Training is the forward pass plus about two more of the same cost (backward).
  analytic = lenet5_forward_flops(BATCH) * (3 if mode == "train" else 1)
  assert analytic / 2 < result["gflops_per_step"] * 1e9 < analytic * 2
  assert result["mfu"] == pytest.approx(result["achieved_tflops"] / (2.0 * 8))
  # CPUs have no memory statistics: null, with a note saying why.
  assert result["peak_memory_mb"] is None
  assert any("memory_stats" in note for note in result["notes"])
  assert result["xla_memory_mb"]["arguments"] > 0


def test_known_peaks():
  assert bench.known_peak_tflops(jax.devices()[0]) is None  # a CPU: MFU needs peak_tflops
  kinds = {"NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H100 PCIe": 756.0, "NVIDIA H200": 989.0,
           "NVIDIA A100-SXM4-40GB": 312.0}
  for kind, peak in kinds.items():
    assert bench.known_peak_tflops(types.SimpleNamespace(device_kind=kind)) == peak


def test_errors_are_clear(tmp_path):
  with pytest.raises(CnnJaxError, match="Unknown model 'lenet6'.*lenet5"):
    bench.run_benchmarks(["lenet6"], out=str(tmp_path / "r.json"))
  with pytest.raises(CnnJaxError, match="image-size"):
    bench.benchmark("lenet5", image_size=28)
  with pytest.raises(CnnJaxError, match="mode"):
    bench.benchmark("lenet5", mode="eval")
  with pytest.raises(CnnJaxError, match="divisible"):
    bench.benchmark("lenet5", batch_size=12)


def test_cli_table_progress_and_json(tmp_path, capsys):
  # No --image-size: lenet5's native 32x32x1. No --steps: sized by the --seconds budget.
  out = tmp_path / "bench.json"
  main.run(["bench", "--models", "lenet5", "--batch-size", str(BATCH), "--seconds", "0.3",
            "--repeats", "2", "--warmup", "1", "--json", "--out", str(out)])
  captured = capsys.readouterr()
  results = json.loads(captured.out)  # with --json stdout holds the JSON alone
  assert results == json.loads(out.read_text())
  (result,) = results
  assert result["image_shape"] == [32, 32, 1] and result["seconds"] == 0.3
  assert result["steps"] >= 1 and result["repeats"] == 2
  lines = captured.err.splitlines()
  assert "[1/1] lenet5" in lines and any("timing 2 rounds of" in line for line in lines)
  header, row = lines.index(bench.table_header(6)), lines.index(bench.format_row(result, 6))
  assert header < row


def test_budget_sizes_steps_and_row_shows_numbers():
  assert bench.steps_for_budget(10.0, 5, 0.01) == 200
  assert bench.steps_for_budget(10.0, 5, 3.0) == 1  # slower than the budget: one step a round
  result = {"model": "resnet50", "images_per_s": {"median": 1234.5, "min": 1000.0, "max": 1300.0},
            "ms_per_step": {"median": 103.7}, "lower_s": 1.25, "compile_s": 10.0,
            "gflops_per_step": 1571.2, "mfu": 0.4123}
  row = bench.format_row(result, 8)
  assert row.split() == ["resnet50", "1,234", "[1,000–1,300]", "103.70", "11.2", "1571",
                         "41.2%"]
  assert bench.format_row({**result, "gflops_per_step": None, "mfu": None}, 8).split()[-2:] == [
      "-", "-"]
  assert len(bench.table_header(8)) == len(row)


def test_known_peaks_follow_the_card_and_the_dtype():
  h100 = types.SimpleNamespace(device_kind="NVIDIA H100 80GB HBM3")
  assert bench.known_peak_tflops(h100, "bfloat16") > bench.known_peak_tflops(h100, "float32")
  assert bench.known_peak_tflops(types.SimpleNamespace(device_kind="cpu")) is None
