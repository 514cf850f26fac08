"""The CIFAR-sized zoo members (shapes, parameter counts of the cited references), the compare
command end to end on a tiny digits comparison (table, plots, re-run skips), and the
features figure of one of its runs."""

import copy
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


# Steps of 128 of the quick subset (500 images: 3 per epoch) the minutes budget buys.
BUDGET_STEPS = 5


@pytest.fixture(scope="module")
def budget(lenet_bench):
  """A minutes budget worth :data:`BUDGET_STEPS` steps at lenet5's benchmarked speed."""
  images_per_s = lenet_bench["train"]["images_per_s"]["median"]
  return ("minutes", (BUDGET_STEPS + 0.5) * 128 / images_per_s / 60)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, lenet_bench, budget):
  """Two tiny models compared on digits under a minutes budget that ends mid-epoch;
  benchmarks reuse lenet5's real results (timing other models again would only add
  compilation time to the suite)."""
  import cnn_jax.bench
  workdir = str(tmp_path_factory.mktemp("compare"))
  fake = lambda name, mode, **kw: {**lenet_bench[mode], "model": name}  # noqa: E731
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(cnn_jax.bench, "benchmark", fake)
    result = compare(["lenet5", "simple_cnn"], dataset="digits", budget=budget,
                     quick=True, workdir=workdir, num_devices=1, progress=None)
  return workdir, result


def test_compare_writes_the_table_and_plots(comparison):
  workdir, result = comparison
  rows = {r["model"]: r for r in result["rows"]}
  assert list(rows) == ["lenet5", "simple_cnn"]
  lenet = rows["lenet5"]
  assert lenet["params"] == 61_706 and lenet["seeds"] == 1
  assert lenet["epochs"] == pytest.approx(BUDGET_STEPS / 3, abs=1e-3)  # ended mid-epoch
  assert lenet["gflops_per_image"] > 0
  assert lenet["train_images_per_s"] > 0 and lenet["compile_s"] > 0
  assert lenet["run_s"] > lenet["wall_s"] > 0  # the run adds setup and test evaluation
  assert 0.0 <= lenet["test_accuracy_mean"] <= 1.0 and lenet["test_accuracy_std"] == 0.0
  with open(os.path.join(workdir, "runs", "lenet5-seed0", "eval", "test.json")) as f:
    assert json.load(f)["accuracy"] == pytest.approx(lenet["test_accuracy_mean"])
  with open(result["tables"]["md"]) as f:
    markdown = f.read()
  assert "| lenet5 | 61,706 |" in markdown and "Recipes:" in markdown
  assert "minutes of training steps (from the benchmarked step time) per model" in markdown
  with open(result["tables"]["csv"]) as f:
    assert [r["model"] for r in csv.DictReader(f)] == ["lenet5", "simple_cnn"]
  with open(result["tables"]["json"]) as f:
    assert json.load(f)["rows"][1]["model"] == "simple_cnn"
  for path in result["plots"].values():
    with Image.open(path) as image:
      assert image.size[0] > 400 and np.asarray(image.convert("L")).std() > 10  # not blank


@pytest.fixture(scope="module")
def lenet_run(comparison):
  """``(session, state)`` of the compared lenet5 run, restored from its last checkpoint."""
  from cnn_jax.train.session import load_run
  session, state, _, _ = load_run(os.path.join(comparison[0], "runs", "lenet5-seed0"),
                                  "latest")
  return session, state


def test_minutes_budget_ends_mid_epoch_and_resumes_exactly(comparison, lenet_run, tmp_path):
  """The run stops at the planned step with its schedule decayed, the partial epoch logged;
  a run interrupted at the epoch end and resumed ends with the same parameters."""
  from cnn_jax.train.logging import read_history
  from cnn_jax.train.loop import fit
  history = read_history(os.path.join(comparison[0], "runs", "lenet5-seed0"))
  assert [r["step"] for r in history] == [3, BUDGET_STEPS]
  assert history[-1]["epoch"] == pytest.approx(BUDGET_STEPS / 3, abs=1e-3)
  assert history[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-9)
  session, full = lenet_run
  config = copy.deepcopy(session.config)
  assert config.train.max_steps == BUDGET_STEPS == int(full.step)
  assert fit(config, str(tmp_path), on_epoch=lambda row: True).state.step == 3
  resumed = fit(config, str(tmp_path)).state
  assert int(resumed.step) == BUDGET_STEPS
  for a, b in zip(jax.tree.leaves(full.nets["net"].params),
                  jax.tree.leaves(resumed.nets["net"].params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_rerun_skips_finished_work_and_refuses_another_budget(comparison, budget,
                                                              monkeypatch):
  workdir, first = comparison
  import cnn_jax.bench
  import cnn_jax.experiment

  def fail(*args, **kwargs):
    raise AssertionError("a finished comparison trained or benchmarked again")

  monkeypatch.setattr(cnn_jax.experiment, "train", fail)
  monkeypatch.setattr(cnn_jax.bench, "benchmark", fail)
  again = compare(["lenet5", "simple_cnn"], dataset="digits", budget=budget, quick=True,
                  workdir=workdir, num_devices=1, progress=None)
  assert again["rows"] == first["rows"]
  with pytest.raises(ConfigError, match="budget minutes"):
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


def test_patch_whitening_is_computed_once_and_frozen():
  """The first training call whitens the batch's 2x2 patches (identity covariance up to
  eps), later calls keep that kernel; the bias has a gradient only for its training steps."""
  from cnn_jax.models.airbench import PatchWhitening, image_patches
  rng = np.random.default_rng(0)
  mixing = np.array([[1.0, 0.8, 0.2], [0.0, 0.6, 0.5], [0.0, 0.0, 0.3]], np.float32)
  x = jnp.asarray(rng.normal(size=(16, 9, 9, 3)).astype(np.float32) @ mixing)
  layer = PatchWhitening(eps=1e-6, bias_train_steps=1)
  variables = layer.init(jax.random.PRNGKey(0), x)
  assert not np.any(layer.apply(variables, x))  # no kernel before the first training step
  y, first = layer.apply(variables, x, train=True, mutable=["whitening"])
  assert y.shape == (16, 8, 8, 24) and int(first["whitening"]["steps"]) == 1
  whitened = np.asarray(y[..., :12]).reshape(-1, 12)
  np.testing.assert_allclose(whitened.T @ whitened / len(whitened), np.eye(12), atol=1e-3)
  np.testing.assert_allclose(y[..., 12:], -y[..., :12], atol=1e-6)
  assert image_patches(x, 2).shape == (16, 8, 8, 12)
  trained = {**variables, **first}
  _, second = layer.apply(trained, 2 * x + 1, train=True, mutable=["whitening"])
  np.testing.assert_array_equal(second["whitening"]["kernel"], first["whitening"]["kernel"])

  def bias_grad(state):
    loss = lambda params: layer.apply({**state, "params": params}, x, train=True,  # noqa: E731
                                      mutable=["whitening"])[0].sum()
    return jax.grad(loss)(state["params"])["bias"]
  assert np.abs(bias_grad(variables)).max() > 0 and not np.any(bias_grad(trained))


def test_flip_average_scores_mirrored_views(lenet_run):
  """Off (the default), the eval step scores one view; on, the mean logits of the image and
  its mirror image."""
  session, state = lenet_run
  task, split = copy.copy(session.task), session.data.splits["test"]
  batch = {"image": jnp.asarray(split["image"][:6]), "label": jnp.asarray(split["label"][:6]),
           "valid": jnp.ones(6, bool)}
  assert task.opts["flip_average"] is False
  logits = lambda images: task.predict(state, task.prepare_batch(  # noqa: E731
      None, {**batch, "image": images}, train=False))[0]
  plain = task.eval_step(state, batch)[1]["probabilities"]
  np.testing.assert_allclose(plain, jax.nn.softmax(logits(batch["image"])), rtol=1e-6)
  task.opts = {**task.opts, "flip_average": True}
  averaged = task.eval_step(state, batch)[1]["probabilities"]
  expected = jax.nn.softmax((logits(batch["image"]) + logits(batch["image"][:, :, ::-1])) / 2)
  np.testing.assert_allclose(averaged, expected, rtol=1e-5, atol=1e-7)
  assert not np.allclose(averaged, plain)


@pytest.mark.parametrize("variant", ["", "cpu"])
def test_speedrun_config(variant):
  from cnn_jax.config import load_config, validate
  config = load_config(f"experiments/cifar10_speedrun.py:{variant}")
  validate(config)
  assert config.model.name == "airbench_cifar" and config.task.flip_average
  assert 0 < config.model.whiten_bias_steps
  model = create("airbench_cifar", widths=tuple(config.model.widths))
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3)))
  assert variables["whitening"]["whiten"]["kernel"].shape == (2, 2, 3, 24)
  logits, features = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 32, 32, 3))),
                                    variables)
  assert logits.shape == (2, 10) and features["pre_logits"].shape == (2, config.model.widths[-1])
