"""The CIFAR-sized zoo members (shapes, parameter counts of the cited references), the compare
command end to end on a tiny digits comparison (table, plots, re-run skips), and the
features figure of one of its runs."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnn_jax import main
from cnn_jax.compare import compare, measure, parse_budget, recipe_for, table_row
from cnn_jax.errors import CnnJaxError, ConfigError
from cnn_jax.figures.features import first_conv_kernel, strongest_channels
from cnn_jax.models import create
from cnn_jax.models.catalog import count_params

# Parameters for 10 classes and RGB input: bearpaw/pytorch-classification's CIFAR AlexNet
# (README: 2.47M) and kuangliu/pytorch-cifar's VGG and GoogLeNet, counted layer by layer from
# their definitions (convs with bias + batch norm, one 512 -> 10 or 1024 -> 10 dense layer).
REFERENCE_PARAMS = {"alexnet_cifar": 2_472_266, "vgg11_bn_cifar": 9_231_114,
                    "vgg16_bn_cifar": 14_728_266, "googlenet_cifar": 6_166_250}
# The last stage's map for a 32x32 image, as in the references.
LAST_STAGE = {"alexnet_cifar": (1, 1, 256), "vgg11_bn_cifar": (1, 1, 512),
              "vgg16_bn_cifar": (1, 1, 512), "googlenet_cifar": (8, 8, 1024)}


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_cifar_members_match_their_references(name):
  assert count_params(name) == REFERENCE_PARAMS[name]
  model = create(name)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  logits, features = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 32, 32, 3))),
                                    variables)
  assert logits.shape == (2, 10) and features["pre_logits"].shape[0] == 2
  stages = [features[k].shape for k in sorted(features) if k.startswith("stage")]
  assert len(stages) >= 3 and stages[-1][1:] == LAST_STAGE[name]
  assert count_params(name, num_classes=100) > count_params(name)


def test_vgg_head_is_checked():
  with pytest.raises(ConfigError, match="head"):
    create("vgg11", head="conv").init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))


def test_budgets_and_recipes():
  assert parse_budget(["epochs", "3"]) == ("epochs", 3.0)
  assert parse_budget(("minutes", 2.5)) == ("minutes", 2.5)
  for bad in (["epochs", "1.5"], ["hours", "2"], ["minutes", "0"], ["epochs"]):
    with pytest.raises(ConfigError, match="--budget"):
      parse_budget(bad)
  assert recipe_for("cifar_resnet56").learning_rate == 0.1  # He et al.
  assert "lr 0.01" in recipe_for("alexnet_cifar").describe()


@pytest.fixture(scope="module")
def lenet_bench(tmp_path_factory):
  """The real train and inference benchmarks of lenet5 as compare measures them."""
  return measure("lenet5", str(tmp_path_factory.mktemp("bench")), (32, 32, 1), 10,
                 seconds=0.1, batch_size=8, num_devices=1)


def test_measure_caches_the_bench_results(lenet_bench, tmp_path_factory):
  train, infer = lenet_bench["train"], lenet_bench["infer"]
  assert train["params"] == 61_706 and train["mode"] == "train" and infer["mode"] == "infer"
  assert train["gflops_per_step"] > infer["gflops_per_step"] > 0  # backward pass on top
  row = table_row("lenet5", lenet_bench, [{"test_accuracy": 0.5, "epochs": 2, "wall_s": 3.0},
                                          {"test_accuracy": 0.7, "epochs": 2, "wall_s": 5.0}], [])
  assert row["test_accuracy_mean"] == pytest.approx(0.6)
  assert row["test_accuracy_std"] == pytest.approx(0.1414, abs=1e-3)  # sample std of 2 seeds
  assert row["gflops_per_image"] == pytest.approx(infer["gflops_per_step"] / 8)
  assert row["memory_mb"] > 0 and row["wall_s"] == 4.0


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, lenet_bench):
  """Two tiny models compared on digits; benchmarks reuse lenet5's real results (timing
  other models again would only add compilation time to the suite)."""
  import cnn_jax.bench
  workdir = str(tmp_path_factory.mktemp("compare"))
  fake = lambda name, mode, **kw: {**lenet_bench[mode], "model": name}  # noqa: E731
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(cnn_jax.bench, "benchmark", fake)
    result = compare(["lenet5", "simple_cnn"], dataset="digits", budget=("epochs", 1),
                     quick=True, workdir=workdir, num_devices=1, progress=None)
  return workdir, result


def test_compare_writes_the_table_and_plots(comparison):
  workdir, result = comparison
  rows = {r["model"]: r for r in result["rows"]}
  assert list(rows) == ["lenet5", "simple_cnn"]
  lenet = rows["lenet5"]
  assert lenet["params"] == 61_706 and lenet["epochs"] == 1 and lenet["seeds"] == 1
  assert lenet["gflops_per_image"] > 0
  assert lenet["train_images_per_s"] > 0 and lenet["compile_s"] > 0 and lenet["wall_s"] > 0
  assert 0.0 <= lenet["test_accuracy_mean"] <= 1.0 and lenet["test_accuracy_std"] == 0.0
  with open(os.path.join(workdir, "runs", "lenet5-seed0", "eval", "test.json")) as f:
    assert json.load(f)["accuracy"] == pytest.approx(lenet["test_accuracy_mean"])
  with open(result["tables"]["md"]) as f:
    markdown = f.read()
  assert "| lenet5 | 61,706 |" in markdown and "Recipes:" in markdown
  with open(result["tables"]["csv"]) as f:
    assert [r["model"] for r in csv.DictReader(f)] == ["lenet5", "simple_cnn"]
  with open(result["tables"]["json"]) as f:
    assert json.load(f)["rows"][1]["model"] == "simple_cnn"
  for path in result["plots"].values():
    with Image.open(path) as image:
      assert image.size[0] > 400 and np.asarray(image.convert("L")).std() > 10  # not blank


def test_rerun_skips_finished_work_and_refuses_another_budget(comparison, monkeypatch):
  workdir, first = comparison
  import cnn_jax.bench
  import cnn_jax.experiment

  def fail(*args, **kwargs):
    raise AssertionError("a finished comparison trained or benchmarked again")

  monkeypatch.setattr(cnn_jax.experiment, "train", fail)
  monkeypatch.setattr(cnn_jax.bench, "benchmark", fail)
  again = compare(["lenet5", "simple_cnn"], dataset="digits", budget=("epochs", 1), quick=True,
                  workdir=workdir, num_devices=1, progress=None)
  assert again["rows"] == first["rows"]
  with pytest.raises(ConfigError, match="budget epochs 1"):
    compare(["lenet5"], dataset="digits", budget=("epochs", 2), quick=True, workdir=workdir,
            num_devices=1, progress=None)


def test_features_figure_of_a_compared_run(comparison, tmp_path, capsys):
  workdir, _ = comparison
  image = tmp_path / "digit.png"
  Image.fromarray((np.random.default_rng(0).random((20, 20)) * 255).astype(np.uint8)).save(image)
  out = tmp_path / "maps.png"
  assert main.run(["features", "--workdir", os.path.join(workdir, "runs", "lenet5-seed0"),
                   "--image", str(image), "--out", str(out)]) == 0
  assert f"wrote {out}" in capsys.readouterr().out
  with Image.open(out) as figure:
    assert figure.size[1] > figure.size[0] / 2  # the filter row and two rows per stage
    assert np.asarray(figure.convert("L")).std() > 10


def test_feature_helpers():
  params = {"block1": {"conv": {"kernel": np.ones((3, 3, 1, 4)), "bias": np.zeros(4)}},
            "dense": {"kernel": np.ones((4, 2))}}
  assert first_conv_kernel(params).shape == (3, 3, 1, 4)
  with pytest.raises(CnnJaxError, match="no convolution"):
    first_conv_kernel({"dense": {"kernel": np.ones((4, 2))}})
  maps = np.zeros((2, 2, 3))
  maps[..., 2], maps[..., 0] = 5.0, -1.0
  assert list(strongest_channels(maps, 2)) == [2, 0]


def test_compare_needs_a_budget_unless_quick():
  with pytest.raises(CnnJaxError, match="needs a budget"):
    compare(["lenet5"], progress=None)
