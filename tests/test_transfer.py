"""Transfer learning: parameter groups, frozen steps, init_from (and resume), cached features.

One tiny base (the study's ``digits`` variant: simple_cnn pretrained on digits 0-7 for one
epoch) is shared by every test through a module fixture; the transfer runs learn 8 vs 9.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from jax.extend import core

from cnn_jax.data import PreparedData
from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models import create
from cnn_jax.models.summary import format_summary, summarize
from cnn_jax.tasks.classification import ClassificationTask
from cnn_jax.train import checkpoint as checkpoint_lib
from cnn_jax.train import optim
from cnn_jax.train.loop import StepCache, fit
from cnn_jax.train.session import load_run, setup
from cnn_jax.train.state import create_train_state
from cnn_jax.transfer import init_from, param_groups
from cnn_jax.transfer.study import pretrain_config, step_config


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
  config = step_config("1_scratch", "digits")
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


def test_frozen_fine_tuning_keeps_the_base_bitwise_and_resumes_its_own_checkpoint(
    pretrained, monkeypatch):
  study_dir, before = pretrained
  config = _quiet(step_config("4_frozen_augment", "digits", str(study_dir)))
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
  config = _quiet(step_config("4_frozen_augment", "digits", str(study_dir)))
  state = setup(config, None).state
  config.model.init_skip = ()  # the old 8-class head does not fit the 2-class one
  with pytest.raises(ShapeError, match=r"params/output/bias is \[8\] in run .* but "
                                       r"\[2\] in this model.*model.init_skip"):
    init_from.initialize(state, config, load_run)
  config.model.init_from = str(study_dir / "no_such_run")
  with pytest.raises(ConfigError, match="neither a run's workdir nor a weight file"):
    init_from.initialize(state, config, load_run)


def test_features_are_cached_and_read_back(pretrained, tmp_path):
  study_dir, _ = pretrained
  config = _quiet(step_config("3_features", "digits", str(study_dir)))
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
