"""Transfer learning: parameter groups, frozen steps, init_from (and resume), cached features,
the study's setups.

One tiny base (the study's ``digits`` variant: simple_cnn pretrained on digits 0-7 for one
epoch) is shared by every test through a module fixture; the transfer runs learn 8 vs 9 (the
frozen run from an image folder of them). Weight files are written from random variables of
``cifar_resnet20`` in torchvision naming (as in test_convert). ImageNet's VGG16 cannot be
had offline: for ``--weights`` the configs the study builds are checked, not a run.
"""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util
from jax.extend import core
from PIL import Image

from cnn_jax.data import PreparedData, prepare
from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models import create
from cnn_jax.models.catalog import layer_groups
from cnn_jax.models.convert import WeightFileError
from cnn_jax.models.summary import format_summary, summarize
from cnn_jax.tasks.classification import ClassificationTask
from cnn_jax.train import checkpoint as checkpoint_lib
from cnn_jax.train import optim
from cnn_jax.train.loop import StepCache, fit
from cnn_jax.train.session import load_run, setup
from cnn_jax.train.state import create_train_state
from cnn_jax.transfer import init_from, param_groups, study
from cnn_jax.transfer.features import FeatureClassificationTask, last_stage
from cnn_jax.transfer.study import Setup, pretrain_config, step_config
from test_convert import random_variables, save_safetensors, to_torchvision


def _quiet(config):
  config.train.progress = False
  return config


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """``(study workdir, trained base network)``: the workdir's ``0_pretrain`` run is trained
  (one epoch on digits 0-7)."""
  root = tmp_path_factory.mktemp("transfer")
  config = _quiet(pretrain_config("digits"))
  config.train.epochs = 1
  config.dataset.train_subset = 128  # two steps: any trained run will do as a base
  result = fit(config, str(root / "0_pretrain"))
  assert result.best_step == int(result.state.step)  # init_from's "best" is the final state
  return root, result.state.nets["net"]


def _flat(tree) -> dict:
  return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def test_rules_pick_named_groups_first_match_wins():
  params = jax.eval_shape(create("simple_cnn", num_blocks=3).init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 28, 28, 1)))["params"]
  rules = (("head", 1.0), ("stage-1", 0.1), ("*", "frozen"))
  actions = {"/".join(p): a for p, a in param_groups.assign(params, rules, "simple_cnn").items()}
  assert actions["output/kernel"] == actions["dense1/bias"] == 1.0
  assert actions["block3_conv1/conv/kernel"] == 0.1
  assert actions["block1_conv1/conv/kernel"] == actions["block2_conv1/bn/scale"] == "frozen"
  with pytest.raises(ConfigError, match="'stage9' matches no parameter.*stage-1"):
    param_groups.assign(params, (("stage9", "frozen"),), "simple_cnn")
  with pytest.raises(ConfigError, match="'frozen' or a learning-rate multiplier"):
    param_groups.assign(params, (("head", "fast"),), "simple_cnn")
  summary = summarize(create("simple_cnn", num_blocks=3), (1, 28, 28, 1), compute_flops=False,
                      frozen=lambda p: param_groups.frozen_paths(p, rules, "simple_cnn"))
  sizes = {k: int(np.prod(v.shape)) for k, v in traverse_util.flatten_dict(params).items()}
  head = sum(n for k, n in sizes.items() if k[0] in ("dense1", "output"))
  third = sum(n for k, n in sizes.items() if k[0] == "block3_conv1")
  assert summary.frozen_params == summary.total_params - head - third
  assert f"frozen: {summary.frozen_params:,}" in format_summary(summary)


def _convolutions(jaxpr) -> int:
  return sum(eqn.primitive.name == "conv_general_dilated" for eqn in jaxpr.eqns) + sum(
      _convolutions(inner) for eqn in jaxpr.eqns for inner in core.jaxprs_in_params(eqn.params))


def test_frozen_base_is_not_differentiated():
  """Two conv layers: the full step runs 2 forward + 3 backward convolutions (no gradient
  for the input image), the frozen-base step only the 2 forward ones."""
  config = step_config("1_scratch", Setup("digits"))
  batch = {"image": jax.ShapeDtypeStruct((4, 8, 8, 1), jnp.float32),
           "label": jax.ShapeDtypeStruct((4,), jnp.int32)}
  task = ClassificationTask(config, PreparedData.synthetic((8, 8, 1), ["8", "9"],
                                                           label=np.zeros(1, np.int32)))

  def make(multiplier=1.0):
    return optim.make_optimizer(config.optimizer, optim.make_schedule(
        config.schedule, config.optimizer.learning_rate * multiplier, 10, 100))

  counts = {}
  for rules in ((), (("head", 1.0), ("*", "frozen"))):
    config.optimizer.param_groups = rules
    networks = task.build_networks(lambda section: param_groups.grouped_optimizer(
        rules, "simple_cnn", make) if rules else make())
    state = jax.eval_shape(lambda: create_train_state(networks, 0))
    counts[bool(rules)] = _convolutions(jax.make_jaxpr(task.train_step)(state, batch).jaxpr)
  assert counts == {False: 5, True: 2}


class Killed(Exception):
  pass


def _digit_folder(root) -> str:
  """scikit-learn's eights and nines as a folder of 8x8 grayscale PNGs (``eights/``,
  ``nines/``), the layout of a user's ``cats/`` ``dogs/``."""
  from sklearn.datasets import load_digits
  digits = load_digits()
  for label, name in ((8, "eights"), (9, "nines")):
    os.makedirs(root / name)
    for i, image in enumerate(digits.images[digits.target == label]):
      Image.fromarray((image * 255 / 16).round().astype(np.uint8)).save(root / name / f"{i}.png")
  return str(root)


def test_frozen_fine_tuning_keeps_the_base_bitwise_and_resumes_its_own_checkpoint(
    pretrained, monkeypatch, tmp_path):
  """Step 4 on an image folder (``study transfer --images``) from the digits base."""
  study_dir, before = pretrained
  folder = Setup("digits", images=_digit_folder(tmp_path / "photos"))
  config = _quiet(step_config("4_frozen_augment", folder, str(study_dir)))
  assert config.dataset.name == "image_folder" and config.dataset.channels == 1
  config.train.epochs = 2
  workdir = str(study_dir / "4_frozen_augment")
  save = checkpoint_lib.Checkpoints.save

  def save_then_die(self, *args, **kwargs):  # the process dies right after epoch 1's save
    save(self, *args, **kwargs)
    self.wait()
    raise Killed

  monkeypatch.setattr(checkpoint_lib.Checkpoints, "save", save_then_die)
  steps = StepCache()  # the resumed run reuses the killed run's compiled step
  with pytest.raises(Killed):
    fit(config, workdir, step_cache=steps)
  monkeypatch.setattr(checkpoint_lib.Checkpoints, "save", save)

  def no_init(*args):
    raise AssertionError("a resumed run must not read model.init_from again")

  monkeypatch.setattr(init_from, "initialize", no_init)
  result = fit(config, workdir, step_cache=steps)
  assert result.session.task.class_names == ["eights", "nines"]
  assert result.resumed_from == result.session.steps_per_epoch
  assert int(result.state.step) == 2 * result.session.steps_per_epoch

  after = result.state.nets["net"]
  old, new = _flat(before.params), _flat(after.params)
  base = [k for k in new if not k[0].startswith(("dense", "output"))]
  assert base and all(np.array_equal(old[k], new[k]) for k in base)  # bitwise
  old_stats, new_stats = _flat(before.collections), _flat(after.collections)
  assert all(np.array_equal(old_stats[k], new_stats[k]) for k in new_stats)  # BN in inference
  assert new[("output", "kernel")].shape == (16, 2)  # the new head, trained
  assert not np.array_equal(new[("dense1", "kernel")], old[("dense1", "kernel")])


def test_init_from_names_the_mismatched_parameter(pretrained):
  study_dir, _ = pretrained
  config = _quiet(step_config("4_frozen_augment", Setup("digits"), str(study_dir)))
  state = setup(config, None).state
  config.model.init_skip = ()  # the old 8-class head does not fit the 2-class one
  with pytest.raises(ShapeError, match=r"params/output/bias is \[8\] in run .* but "
                                       r"\[2\] in this model.*model.init_skip"):
    init_from.initialize(state, config, load_run)
  config.model.init_from = str(study_dir / "no_such_run")
  with pytest.raises(ConfigError, match="neither a run's workdir nor a weight file"):
    init_from.initialize(state, config, load_run)


def test_init_from_a_run_of_the_same_seed_warns_of_the_replay(pretrained, recwarn):
  """Same seed, same step counter: the new run would redraw the source run's batches,
  augmentations and dropout masks; the study gives every run its own seed."""
  study_dir, _ = pretrained
  config = _quiet(step_config("4_frozen_augment", Setup("digits"), str(study_dir)))
  seeds = [step_config(s, Setup("digits")).seed for s in study.STEPS]
  assert len(set(seeds)) == len(seeds) and pretrain_config("digits").seed not in seeds
  state = setup(config, None).state
  init_from.initialize(state, config, load_run)
  assert not [w for w in recwarn if "same seed" in str(w.message)]
  config.seed = pretrain_config("digits").seed
  with pytest.warns(UserWarning, match=r"trained with the same seed \(0\).*another seed"):
    init_from.initialize(state, config, load_run)

  # the same dataset drawn with another split: its val/test examples were trained on
  again = _quiet(pretrain_config("digits"))
  again.model.update({"init_from": str(study_dir / "0_pretrain"), "init_skip": ()})
  again.seed, again.dataset.split_seed = 7, 3
  again.dataset.train_subset = 128  # as the fixture's run
  state = setup(again, None).state
  with pytest.warns(UserWarning, match=r"\d+ test and [1-9]\d* validation examples of this "
                                       r"run were training examples.*same dataset.split_seed"):
    init_from.initialize(state, again, load_run, prepare(again, None).indices)
  again.dataset.split_seed = pretrain_config("digits").seed  # the source's split
  init_from.initialize(state, again, load_run, prepare(again, None).indices)
  assert not [w for w in recwarn if "training examples" in str(w.message)]
  source = {"train": np.arange(10), "val": [], "test": [], "test_from": "train"}
  assert init_from.seen_in_training(source, {"train": [], "val": np.array([3, 12]),
                                             "test": np.array([1, 2, 20]),
                                             "test_from": "train"}) == {"val": 1, "test": 2}
  assert init_from.seen_in_training(source, {"train": [], "val": [], "test": np.array([1]),
                                             "test_from": "test"})["test"] == 0  # test images


def test_replicates_get_their_own_seeds_and_pair_with_step_1():
  """``--replicates 2``: runs ``STEP_r1`` with other seeds; the table's means, standard
  deviations and step 5's gain over step 1 paired by replicate."""
  replicate = step_config("5_finetune", Setup("digits"), "study", replicate=1)
  assert replicate.model.init_from == os.path.join("study", "4_frozen_augment_r1")
  assert replicate.seed != step_config("5_finetune", Setup("digits"), "study").seed
  assert study.run_name("5_finetune", 1) == "5_finetune_r1"
  # one split per replicate: step 5 is tested on images step 4 never trained on
  splits = {}
  for step in ("4_frozen_augment", "5_finetune"):
    config = step_config(step, Setup("digits"), "study", replicate=1)
    splits[step] = prepare(config, None).indices
  assert all(np.array_equal(splits["4_frozen_augment"][k], splits["5_finetune"][k])
             for k in ("train", "val", "test"))
  other = step_config("5_finetune", Setup("digits"), "study", replicate=2)
  assert not np.array_equal(prepare(other, None).indices["test"], splits["5_finetune"]["test"])
  tests = {"1_scratch": (0.70, 0.74), "5_finetune": (0.80, 0.86)}
  rows = [{"step": step, "replicate": r, "trainable_params": 10, "frozen_params": 5,
           "epochs": 3, "train_time_s": 2.0 + r, "val_accuracy": 0.5, "test_accuracy": t[r]}
          for step, t in tests.items() for r in (0, 1)]
  first, last = study.summarize(rows)
  assert first["replicates"] == 2 and first["test_accuracies"] == [0.70, 0.74]
  assert np.isclose(first["test_accuracy_std"], np.std([0.70, 0.74], ddof=1))
  assert np.allclose(last["gain_over_first"], (0.11, np.std([0.10, 0.12], ddof=1)))
  table = study.format_table([first, last])
  assert "mean ± sd of 2 seeds" in table and "| 0.830 ± 0.042 |" in table
  assert "5_finetune minus 1_scratch, test accuracy: +11.0 points (sd 1.4" in table
  with pytest.raises(ConfigError, match="--replicates must be at least 1"):
    study.run_study("unused", Setup("digits"), replicates=0)


def test_features_are_cached_and_read_back(pretrained, tmp_path):
  study_dir, _ = pretrained
  config = _quiet(step_config("3_features", Setup("digits"), str(study_dir)))
  config.task.cache_dir = str(tmp_path / "cache")
  steps = StepCache()
  first = fit(config, str(tmp_path / "first"), step_cache=steps)
  second = fit(config, str(tmp_path / "second"), step_cache=steps)
  extracted, cached = first.session.task.extraction, second.session.task.extraction
  assert set(extracted) == {"train", "val", "test"}
  assert not any(e.from_cache for e in extracted.values())
  assert all(e.from_cache for e in cached.values())
  assert {e.path for e in extracted.values()} == {e.path for e in cached.values()}
  features = first.session.data.splits["train"]["image"]
  assert features.shape[1:] == (2, 2, 16)  # the base's last stage on 8x8 digits
  np.testing.assert_array_equal(features, second.session.data.splits["train"]["image"])
  metrics = lambda run: [{k: v for k, v in row.items() if k != "epoch_time_s"}  # noqa: E731
                         for row in run.history]
  assert metrics(first) == metrics(second)  # the same features train the same head
  assert "val_accuracy" in first.history[-1]


def test_summary_counts_frozen_parameters_apart():
  from cnn_jax import summary
  text = summary("simple_cnn", param_groups=(("head", 1.0), ("*", "frozen")))
  trainable, frozen = (int(n.replace(",", "")) for n in
                       re.search(r"Trainable: ([\d,]+), frozen: ([\d,]+)", text).groups())
  from cnn_jax.models.catalog import input_shape
  params = jax.eval_shape(create("simple_cnn").init, jax.random.PRNGKey(0),
                          jnp.zeros((1,) + input_shape("simple_cnn")))["params"]
  total = sum(leaf.size for leaf in jax.tree.leaves(params))
  head = sum(leaf.size for path, leaf in traverse_util.flatten_dict(params).items()
             if path[0] == "output" or path[0].startswith("dense"))
  assert trainable + frozen == total and trainable == head


def test_vgg_stages_follow_torchvision_indices():
  def groups(name):
    params = jax.eval_shape(create(name).init, jax.random.PRNGKey(0),
                            jnp.zeros((1, 32, 32, 3)))["params"]
    return {group: set(modules) for group, modules in layer_groups(name, list(params)).items()}

  vgg16 = groups("vgg16")
  assert list(vgg16) == ["stage1", "stage2", "stage3", "stage4", "stage5", "head"]
  assert vgg16["stage5"] == {"features_24", "features_26", "features_28"}  # Keras's block5
  assert vgg16["head"] == {"classifier_0", "classifier_3", "classifier_6"}
  assert groups("vgg11_bn")["stage2"] == {"features_4", "features_5"}  # conv, its batch norm


def _file(tmp_path, **options) -> tuple[str, dict]:
  """``(path, variables)``: random cifar_resnet20 variables (10 classes) saved as a
  torchvision-named ``.safetensors``."""
  variables = random_variables("cifar_resnet20", **options)
  name = "_".join(f"{v}" for v in options.values()) or "default"
  return save_safetensors(to_torchvision(variables), tmp_path / f"{name}.safetensors"), variables


def test_init_from_a_weight_file(tmp_path):
  """A file saved with other options (projection shortcuts) and another head (10 classes)
  into a 2-class model; its first convolution turned from BGR to RGB."""
  path, source = _file(tmp_path, shortcut="projection")
  data = PreparedData.synthetic((32, 32, 3), ["cat", "dog"], label=np.zeros(1, np.int32))
  config = step_config("4_frozen_augment", Setup(base="resnet"))
  task = ClassificationTask(config, data)
  networks = task.build_networks(lambda section: optax.sgd(0.1))
  state = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype),  # values come from the file
                       jax.eval_shape(lambda: create_train_state(networks, 0)))

  def initialized(**model):
    config.model.update({"init_from": path, **model})
    return init_from.initialize(state, config, load_run).nets["net"]

  with pytest.raises(WeightFileError, match="unexpected 'layer2.0.downsample"):
    initialized()  # read at the model's own options (shortcut="pad") the file does not fit
  net = initialized(init_options={"shortcut": "projection"}, init_reverse_channels=True)
  params, given = _flat(net.params), _flat(source["params"])
  np.testing.assert_array_equal(params[("conv1", "kernel")], given[("conv1", "kernel")][:, :, ::-1])
  assert all(np.array_equal(v, given[k]) for k, v in params.items() if k[0] not in ("conv1", "fc"))
  assert params[("fc", "kernel")].shape == (64, 2)  # the skipped head keeps its fresh init
  stats, given_stats = _flat(net.collections["batch_stats"]), _flat(source["batch_stats"])
  assert stats and all(np.array_equal(v, given_stats[k]) for k, v in stats.items())


def test_init_from_a_weight_file_saved_without_its_classifier(tmp_path):
  """Like Keras's ``include_top=False`` files: the skipped head need not be in the file;
  without ``init_skip`` the missing key is named."""
  source = random_variables("cifar_resnet20")
  state_dict = {k: v for k, v in to_torchvision(source).items() if not k.startswith("fc.")}
  path = save_safetensors(state_dict, tmp_path / "notop.safetensors")
  variables = init_from.weight_file_variables("cifar_resnet20", path, {}, skip=("head",))
  assert not np.any(np.asarray(variables["params"]["fc"]["kernel"]))  # not read: zeros
  params, given = _flat(variables["params"]), _flat(source["params"])
  assert all(np.array_equal(v, given[k]) for k, v in params.items() if k[0] != "fc")
  with pytest.raises(WeightFileError, match="missing 'fc.bias'"):
    init_from.weight_file_variables("cifar_resnet20", path, {})


def test_feature_base_from_a_weight_file(tmp_path):
  path, source = _file(tmp_path)
  config = step_config("3_features", Setup(base="resnet"))
  config.task.update({"base_run": "", "base_weights": path, "base_model": "cifar_resnet20"})
  config.dataset.mean, config.dataset.std = study.CAFFE_NORMALIZATION
  data = PreparedData.synthetic((32, 32, 3), ["cat", "dog"], label=np.zeros(1, np.int32))
  data.normalization = study.CAFFE_NORMALIZATION
  forward, variables, normalization = FeatureClassificationTask(config, data).load_base(data)
  assert normalization == study.CAFFE_NORMALIZATION  # the run's own, not a base run's
  params, given = _flat(variables["params"]), _flat(source["params"])
  assert all(np.array_equal(v, given[k]) for k, v in params.items() if k[0] != "fc")
  assert not np.any(params[("fc", "kernel")])  # the classifier is not read
  assert last_stage(forward, (32, 32, 3)) == "stage3"
  config.task.base_model = ""
  with pytest.raises(ConfigError, match="task.base_model is empty"):
    FeatureClassificationTask(config, data).load_base(data)


def test_resnet_base_groups_in_the_study():
  setup = Setup("digits", "resnet")
  assert pretrain_config("digits", "resnet").model.name == "cifar_resnet20"
  counts = {step: study.parameter_counts(step_config(step, setup), (8, 8, 1), 2)
            for step in ("1_scratch", "4_frozen_augment", "5_finetune")}
  total = sum(counts["1_scratch"])
  assert counts["1_scratch"] == (total, 0)
  assert counts["4_frozen_augment"] == (64 * 2 + 2, total - 130)  # the new fc alone
  stage3 = 9 * 32 * 64 + 5 * 9 * 64 * 64 + 6 * 2 * 64  # six convs, their batch norms
  assert counts["5_finetune"] == (stage3 + 130, total - stage3 - 130)


def test_imagenet_vgg16_steps_and_study_setups(tmp_path):
  """``--images DIR --weights VGG16.h5``: the configs (ImageNet weights cannot be had
  offline); a workdir keeps the setup it was started with."""
  setup = Setup(images=str(tmp_path), weights="vgg16.h5")
  features = step_config("3_features", setup, "study")
  assert (features.task.base_run, features.task.base_weights) == ("", "vgg16.h5")
  assert features.task.base_model == "vgg16" and features.task.base_reverse_channels
  assert features.dataset.image_size == 150
  frozen = step_config("4_frozen_augment", setup, "study")
  assert (frozen.model.name, frozen.model.init_from, frozen.model.init_options.to_dict()) == (
      "vgg16", "vgg16.h5", {})
  assert frozen.model.init_reverse_channels and tuple(frozen.dataset.mean)[0] == 123.68 / 255
  convs = 14_714_688  # VGG16's convolutions
  assert study.parameter_counts(frozen, (150, 150, 3), 2)[1] == convs
  finetune = step_config("5_finetune", setup, "study")
  assert finetune.model.init_from == os.path.join("study", "4_frozen_augment")
  block5 = 3 * (9 * 512 * 512 + 512)
  assert study.parameter_counts(finetune, (150, 150, 3), 2)[1] == convs - block5
  with pytest.raises(ConfigError, match="no such file"):
    study.run_study(str(tmp_path / "study"), setup)
  with pytest.raises(ConfigError, match="at least 32x32"):
    Setup("digits", weights="vgg16.h5").check()
  with pytest.raises(ConfigError, match="Unknown study base 'alexnet'"):
    Setup(base="alexnet").check()

  workdir = str(tmp_path / "digits")
  study.check_workdir(workdir, Setup("digits"))
  study.check_workdir(workdir, Setup("digits"))  # the same setup again
  with pytest.raises(ConfigError, match="base='vgg'.*another --workdir"):
    study.check_workdir(workdir, Setup("digits", "resnet"))
  with open(os.path.join(workdir, study.SETUP_FILE)) as f:
    assert json.load(f)["base"] == "vgg"
