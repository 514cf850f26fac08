"""A hyperparameter search with optuna: each trial is a normal, resumable training run.

``run_search(config_path, study_dir, ...)`` runs trials until the study holds ``trials``
finished ones (complete, pruned or failed). Trial ``n`` trains in ``STUDY/trials/NNNN``
(``cnn_jax.train.loop.fit``: its ``config.json`` holds the config with the trial's
overrides, ``trial.json`` its parameters, state and objective). The objective is the
task's primary validation metric (``Session.primary``, e.g. ``val_accuracy``), its best
epoch; the test split never chooses. Each epoch's value goes to optuna, so a pruner can
stop a hopeless trial early (its ``trial.json`` says ``"state": "PRUNED"``).

The study lives in optuna storage: ``sqlite:///STUDY/study.db`` by default, any SQLAlchemy
URL (several hosts on one database), or ``journal`` (``STUDY/journal.log``, optuna's
journal file storage, for several processes on one machine). A worker holds an exclusive
lock (``flock``) on ``trials/NNNN/.lock`` while it runs trial ``n`` and on
``STUDY/.claim.lock`` while it picks a trial, so workers never run a trial twice; a
RUNNING trial whose lock is free belonged to a killed worker, and the next worker
continues it from its checkpoint under the same number and workdir. Trials in one process
share compiled steps when they differ only in learning rates and weight decays
(``cnn_jax.train.loop.StepCache``); processes share compiled programs through the
persistent compilation cache ``STUDY/jit_cache`` (unless one is configured already).
"""

import contextlib
import fcntl
import importlib.util
import json
import os
import subprocess
import sys
import time
import warnings

import jax
import ml_collections
import optuna

from cnn_jax import config as config_lib
from cnn_jax.errors import CnnJaxError, ConfigError, NonFiniteError, ShapeError
from cnn_jax.search import space as space_lib
from cnn_jax.train.loop import StepCache, fit
from cnn_jax.train.session import setup

SAMPLERS = ("grid", "random", "tpe", "gp")
PRUNERS = ("none", "median", "halving", "hyperband")
SEARCH_FILE = "search.json"  # what the study searches; search-report reads it
TRIALS_DIR = "trials"
TRIAL_FILE = "trial.json"


def trial_dir(study_dir: str, number: int) -> str:
  """The workdir of trial ``number``."""
  return os.path.join(study_dir, TRIALS_DIR, f"{number:04d}")


def storage_for(study_dir: str, storage: str | None):
  """Optuna storage: ``None`` -> ``sqlite:///STUDY/study.db``; ``"journal"`` or a path
  ending in ``.log`` -> journal file storage; anything else -> a SQLAlchemy URL."""
  if storage in (None, "", "sqlite"):
    return f"sqlite:///{os.path.abspath(os.path.join(study_dir, 'study.db'))}"
  if storage == "journal" or storage.endswith(".log"):
    path = os.path.join(study_dir, "journal.log") if storage == "journal" else storage
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
  if "://" not in storage:
    raise ConfigError(f"--storage {storage!r} is neither 'journal', a .log file nor a database "
                      "URL such as sqlite:///runs/study.db or postgresql://user@host/db.")
  return storage


def make_sampler(name: str, space: dict, seed: int) -> optuna.samplers.BaseSampler:
  """The optuna sampler ``name`` in ``grid | random | tpe | gp`` seeded with ``seed``."""
  if name == "grid":
    grid = {key: dim.grid_values() for key, dim in space.items()}
    return optuna.samplers.GridSampler(grid, seed=seed)
  if name == "random":
    return optuna.samplers.RandomSampler(seed=seed)
  if name == "tpe":
    return optuna.samplers.TPESampler(seed=seed)
  if name == "gp":
    if importlib.util.find_spec("torch") is None:  # GPSampler's dependency
      raise CnnJaxError("--sampler gp needs PyTorch (pip install torch); use tpe otherwise.")
    return optuna.samplers.GPSampler(seed=seed)
  raise ConfigError(f"Unknown --sampler {name!r}; choose one of {', '.join(SAMPLERS)}.")


def make_pruner(name, epochs: int) -> optuna.pruners.BasePruner:
  """``none | median | halving | hyperband`` over epochs (one intermediate value each), or
  an optuna pruner as it is."""
  if isinstance(name, optuna.pruners.BasePruner):
    return name
  if name == "none":
    return optuna.pruners.NopPruner()
  if name == "median":
    return optuna.pruners.MedianPruner(n_startup_trials=5)
  if name == "halving":
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
  if name == "hyperband":
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
  raise ConfigError(f"Unknown --pruner {name!r}; choose one of {', '.join(PRUNERS)}.")


@contextlib.contextmanager
def _exclusive(path: str, wait: bool = True):
  """Holds an exclusive ``flock`` on ``path`` (yields False if ``wait`` is off and another
  process holds it). The OS drops the lock when its process dies, even by SIGKILL."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
      yield False
      return
    try:
      yield True
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _write_json(path: str, payload: dict) -> None:
  with config_lib.atomic_write(path) as f:
    json.dump(payload, f, indent=2, sort_keys=True)


def _search_settings(study_dir: str, settings: dict, config: ml_collections.ConfigDict) -> dict:
  """Writes ``STUDY/search.json`` on the first run, with the objective (the primary metric
  of a session built from ``config``); later runs must search the same config and space
  (a different one would mix two experiments in one study)."""
  path = os.path.join(study_dir, SEARCH_FILE)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    changed = [k for k in ("config", "overrides", "space") if saved.get(k) != settings[k]]
    if changed:
      raise ConfigError(f"{study_dir} holds a study of another search (changed: "
                        f"{', '.join(changed)}); use a new --study-dir, or repeat the original "
                        "command to continue it.")
    return saved
  metric, mode = setup(config, None).primary
  settings = {**settings, "metric": metric, "direction": "maximize" if mode == "max" else
              "minimize"}
  os.makedirs(study_dir, exist_ok=True)
  _write_json(path, settings)
  return settings


def load_study(study_dir: str, storage: str | None = None) -> tuple[optuna.Study, dict]:
  """The study of ``study_dir`` and its ``search.json`` settings (for reports)."""
  path = os.path.join(study_dir, SEARCH_FILE)
  if not os.path.exists(path):
    raise CnnJaxError(f"{path} not found: is {study_dir} the --study-dir of a search?")
  with open(path) as f:
    settings = json.load(f)
  storage = storage_for(study_dir, storage or settings["storage"])
  return optuna.load_study(study_name=settings["study_name"], storage=storage), settings


class _Worker:
  """One process's share of a study: claims trials, trains them, tells optuna."""

  def __init__(self, study: optuna.Study, study_dir: str, config: ml_collections.ConfigDict,
               space: dict, settings: dict, sampler: str, seed: int, pruning: bool, log):
    self.study, self.study_dir, self.config, self.space = study, study_dir, config, space
    self.metric, self.sampler, self.seed, self.pruning = settings["metric"], sampler, seed, pruning
    self.settings, self.log = settings, log
    self.step_cache = StepCache()
    self.ran = 0

  def run(self, trials: int) -> None:
    while True:
      with contextlib.ExitStack() as held:
        with _exclusive(os.path.join(self.study_dir, ".claim.lock")):
          trial = self._claim(trials, held)
        if trial is None:
          return
        self._train(trial)
        self.ran += 1

  def _claim(self, trials: int, held: contextlib.ExitStack) -> optuna.Trial | None:
    """A trial to run, its lock held in ``held``: an orphaned RUNNING trial, else a new
    one; None when the study has ``trials`` finished or running trials (or the grid is
    exhausted)."""
    existing = self.study.get_trials(deepcopy=False)
    running = 0
    for frozen in existing:
      if frozen.state != optuna.trial.TrialState.RUNNING:
        continue
      lock = held.enter_context(_exclusive(self._lock_path(frozen.number), wait=False))
      if lock:
        self.log(f"trial {frozen.number}: its worker is gone; continuing it")
        return optuna.Trial(self.study, frozen._trial_id)
      running += 1
    finished = sum(t.state.is_finished() for t in existing)
    if finished + running >= trials:
      return None
    sampler = make_sampler(self.sampler, self.space, self.seed * 100_003 + len(existing))
    if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(self.study):
      self.log(f"the grid's {space_lib.grid_size(self.space)} points are all tried")
      return None
    self.study.sampler = sampler
    trial = self.study.ask()
    for key, dim in self.space.items():
      dim.suggest(trial, key)
    if not held.enter_context(_exclusive(self._lock_path(trial.number), wait=False)):
      raise CnnJaxError(f"{self._lock_path(trial.number)} is locked by another process; "
                        "is another study using this --study-dir?")
    return trial

  def _lock_path(self, number: int) -> str:
    return os.path.join(trial_dir(self.study_dir, number), ".lock")

  def _train(self, trial: optuna.Trial) -> None:
    params = dict(trial.params)
    workdir = trial_dir(self.study_dir, trial.number)
    record = {"number": trial.number, "params": params, "overrides": space_lib.overrides(params),
              "metric": self.metric, "state": "RUNNING"}
    _write_json(os.path.join(workdir, TRIAL_FILE), record)
    reported = set(self.study._storage.get_trial(trial._trial_id).intermediate_values)
    pruned_at = []

    def on_epoch(row: dict) -> bool:
      if row["epoch"] not in reported:
        trial.report(row[self.metric], row["epoch"])
      if self.pruning and trial.should_prune():
        pruned_at.append(row["epoch"])
        return True
      return False

    start = time.perf_counter()
    previous = trial.user_attrs.get("wall_s", 0.0)
    try:
      config = space_lib.apply(self.config, params)
      result = fit(config, workdir, on_epoch=on_epoch, step_cache=self.step_cache)
    except (NonFiniteError, ConfigError, ShapeError) as e:  # this trial's values, not the run
      self._finish(trial, record, optuna.trial.TrialState.FAIL, None,
                   previous + time.perf_counter() - start, epochs=None, reason=str(e))
      return
    history = [row[self.metric] for row in result.history]
    best = (max if self.settings["direction"] == "maximize" else min)(history)
    state = optuna.trial.TrialState.PRUNED if pruned_at else optuna.trial.TrialState.COMPLETE
    self._finish(trial, record, state, best, previous + time.perf_counter() - start,
                 epochs=len(history), resumed_from=result.resumed_from)

  def _finish(self, trial, record, state, value, wall_s, epochs, **details) -> None:
    for key, attr in {"wall_s": round(wall_s, 3), "epochs": epochs, **details}.items():
      trial.set_user_attr(key, attr)
    record.update(state=state.name, value=value, epochs=epochs, wall_s=round(wall_s, 3),
                  **details)
    _write_json(os.path.join(trial_dir(self.study_dir, trial.number), TRIAL_FILE), record)
    try:
      self.study.tell(trial, value if state == optuna.trial.TrialState.COMPLETE else None,
                      state=state)
    except RuntimeError:  # GridSampler stops the study after its last point (ask-and-tell)
      if self.sampler != "grid":
        raise
    shown = f"{self.metric} {value:.4f}" if value is not None else details.get("reason", "")
    self.log(f"trial {trial.number} {state.name.lower()} after {epochs} epoch(s): {shown}"
             f"  {space_lib.overrides(record['params'])}")


def run_search(config_path: str, study_dir: str, sampler: str = "tpe", trials: int = 20,
               pruner: str | optuna.pruners.BasePruner = "none", storage: str | None = None, seed: int = 0,
               workers: int = 1, overrides: list[str] | tuple = (),
               study_name: str | None = None, log=print) -> dict:
  """Runs (or continues) the search until the study holds ``trials`` finished trials.

  Args:
    config_path: the experiment file (``FILE.py[:VARIANT]``) with ``get_search_space()``.
    overrides: ``["key=value", ...]`` applied to the config before every trial.
    pruner: a name in :data:`PRUNERS` or an optuna pruner.
    workers: processes running trials at once (``workers - 1`` are started here, each
      running this function with ``workers=1``; they need a pruner name).

  Returns:
    ``{"study": optuna.Study, "best": FrozenTrial | None, "ran": trials run by this
    process, "compilations": train steps compiled by this process, "counts": {state: n}}``.
  """
  if trials < 1:
    raise ConfigError(f"--trials must be >= 1, got {trials}.")
  if workers < 1:
    raise ConfigError(f"--workers must be >= 1, got {workers}.")
  config = config_lib.load_config(config_path)
  config_lib.apply_overrides(config, list(overrides))
  config_lib.validate(config)
  space = space_lib.load(config_path, config)
  make_sampler(sampler, space, seed)  # a bad name or a missing dependency fails here
  settings = _search_settings(study_dir, {
      "config": config_path, "overrides": list(overrides),
      "space": {k: d.describe() for k, d in space.items()},
      "storage": storage or "sqlite", "study_name": study_name or os.path.basename(
          os.path.abspath(study_dir))}, config)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(storage=storage_for(study_dir, settings["storage"]),
                                study_name=settings["study_name"],
                                direction=settings["direction"], load_if_exists=True,
                                pruner=make_pruner(pruner, config.train.epochs))
  if not jax.config.jax_compilation_cache_dir:  # workers and reruns share compiled programs
    jax.config.update("jax_compilation_cache_dir", os.path.join(study_dir, "jit_cache"))
  helpers = [_start_worker(config_path, study_dir, sampler, trials, pruner, settings["storage"],
                           seed, overrides, settings["study_name"]) for _ in range(workers - 1)]
  worker = _Worker(study, study_dir, config, space, settings, sampler, seed,
                   not isinstance(study.pruner, optuna.pruners.NopPruner), log)
  try:
    worker.run(trials)
  finally:
    failed = [p.args for p in helpers if p.wait() != 0]
  if failed:
    raise CnnJaxError(f"{len(failed)} worker process(es) failed; rerun the command to continue "
                      "the study.")
  finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
  counts = {}
  for t in finished:
    counts[t.state.name] = counts.get(t.state.name, 0) + 1
  complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
  return {"study": study, "best": study.best_trial if complete else None, "ran": worker.ran,
          "compilations": worker.step_cache.compilations, "counts": counts,
          "metric": settings["metric"]}


def _start_worker(config_path, study_dir, sampler, trials, pruner, storage, seed, overrides,
                  study_name) -> subprocess.Popen:
  """Another process running ``python -m cnn_jax search`` with the same settings."""
  command = [sys.executable, "-m", "cnn_jax", "search", "--config", config_path,
             "--study-dir", study_dir, "--sampler", sampler, "--trials", str(trials),
             "--pruner", pruner, "--storage", storage, "--seed", str(seed),
             "--study-name", study_name, "--workers", "1",
             *[f"--config.{o}" for o in overrides]]
  return subprocess.Popen(command)
