"""Weight import: Keras and PyTorch files -> our models (``cnn_jax.models.convert``).

* Keras parity (needs ``keras`` and ``h5py``): a subprocess -- this file run as a script,
  with ``KERAS_BACKEND=jax`` set before Keras is imported -- builds
  ``keras.applications`` VGG16, ResNet50, InceptionV3 and Xception (``weights=None``,
  random biases and batch-norm parameters and statistics so that every tensor matters),
  saves each as Keras 3 ``.weights.h5`` and as a legacy ``.h5`` (VGG16 and InceptionV3:
  legacy only) with its logits on random images; each file is converted and our logits must match
  to 1e-4 (max absolute error over the largest reference logit).
* torchvision parity runs only where torchvision imports (not on the CPU-only PyTorch
  used here).
* Without PyTorch: a state dict in torchvision naming is written from random variables
  of our models (the inverse mapping below is the test's own), saved as ``.safetensors``
  and loaded back; every leaf must come back exactly. Broken files (missing, unexpected,
  misshapen keys, another architecture) must raise an error naming the key.
* With PyTorch: the same through ``torch.save`` / ``.pth``, and a pickle holding anything
  but tensors is refused.
"""

import functools
import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from cnn_jax.errors import CnnJaxError
from cnn_jax.models import create
from cnn_jax.models.convert import WeightFileError, load_pretrained, trace

# Our model -> (keras.applications constructor, input size, files written). VGG's flatten
# needs 224; its 0.5 GB of weights go to a legacy .h5 only (the format of Keras's own
# downloads), which Keras writes much faster than a .weights.h5; so do InceptionV3's (only
# Conv2D and batch norm, layer kinds whose Keras 3 variables ResNet50's file covers).
BOTH_FORMATS = (".weights.h5", ".h5")
KERAS_MODELS = {
    "vgg16": ("VGG16", 224, (".h5",)),
    "keras_resnet50": ("ResNet50", 32, BOTH_FORMATS),
    "keras_inception_v3": ("InceptionV3", 75, (".h5",)),
    "xception": ("Xception", 71, BOTH_FORMATS),
}
NUM_CLASSES = 10
BATCH = 2
TOLERANCE = 1e-4

TORCH_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
              "var": "running_var"}


def relative_error(ours, reference) -> float:
  """Max absolute difference over the largest reference magnitude."""
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


@functools.lru_cache(maxsize=None)
def jitted_apply(name: str, **options):
  """``variables, images -> logits`` for model ``name``, compiled once per model."""
  model = create(name, **options)
  return jax.jit(lambda variables, x: model.apply(variables, x, train=False)[0])


# ------------------------------------------------------------------------------ Keras


def write_keras_references(out_dir: str) -> None:
  """Builds the Keras models, saves weights in both formats, images and logits (a script)."""
  import keras
  rng = np.random.default_rng(0)
  for name, (constructor, size, suffixes) in KERAS_MODELS.items():
    model = getattr(keras.applications, constructor)(
        weights=None, input_shape=(size, size, 3), classes=NUM_CLASSES,
        classifier_activation=None)
    for variable in model.weights:
      if variable.name in ("gamma", "moving_variance"):
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
      elif "kernel" not in variable.name:  # biases, beta, moving mean (Keras starts them at 0)
        variable.assign(rng.normal(0.0, 0.1, variable.shape).astype(np.float32))
    if ".weights.h5" in suffixes:
      model.save_weights(os.path.join(out_dir, f"{name}.weights.h5"))
    model.save(os.path.join(out_dir, f"{name}.h5"))  # Keras 2's HDF5 layout
    images = rng.uniform(0.0, 1.0, (BATCH, size, size, 3)).astype(np.float32)
    logits = np.asarray(model.predict_on_batch(images))
    np.savez(os.path.join(out_dir, f"{name}.npz"), images=images, logits=logits)


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory) -> str:
  """A folder with the Keras models' weight files and reference logits."""
  for module in ("keras", "h5py"):
    if importlib.util.find_spec(module) is None:
      pytest.skip(f"{module} is not installed (pip install cnn_jax[keras])")
  out_dir = str(tmp_path_factory.mktemp("keras"))
  # Keras' backend is chosen at import: a subprocess keeps it away from this process. Its
  # XLA compiles tiny graphs (one per initializer shape): lower optimization makes them fast.
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_HOME": out_dir, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
         "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
  result = subprocess.run([sys.executable, __file__, out_dir], env=env, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return out_dir


@pytest.mark.parametrize("name", KERAS_MODELS)
def test_keras_parity(keras_files, name):
  reference = np.load(os.path.join(keras_files, f"{name}.npz"))
  for suffix in KERAS_MODELS[name][2]:
    model, variables = load_pretrained(name, os.path.join(keras_files, name + suffix),
                                       num_classes=NUM_CLASSES)
    logits = jitted_apply(name, num_classes=NUM_CLASSES)(variables, reference["images"])
    error = relative_error(logits, reference["logits"])
    print(f"{name}{suffix}: max relative error {error:.2e}")
    assert error <= TOLERANCE, (name, suffix, error)


def test_keras_mismatches(keras_files):
  path = os.path.join(keras_files, "keras_resnet50.weights.h5")
  with pytest.raises(WeightFileError,
                     match=r"missing 'conv4_block7_1_conv/0'.*\[1, 1, 1024, 256\]"):
    load_pretrained("keras_resnet101", path, num_classes=NUM_CLASSES)
  with pytest.raises(WeightFileError, match=r"'predictions/0' has shape \[2048, 10\], expected "
                                            r"\[2048, 1000\]"):
    load_pretrained("keras_resnet50", path)
  with pytest.raises(WeightFileError, match="use keras_resnet50"):
    load_pretrained("resnet50", path, num_classes=NUM_CLASSES)
  with pytest.raises(WeightFileError, match="No Keras layout for AlexNet"):
    load_pretrained("alexnet", path)


# ---------------------------------------------------------------------- PyTorch naming


def random_variables(name: str, seed: int = 0, **options) -> dict:
  """Random numpy values for every leaf of model ``name`` (variances positive), so that a
  swapped scale/bias or mean/var pair cannot go unnoticed as it would with init's 0s and 1s."""
  from cnn_jax.models.catalog import input_shape
  rng = np.random.default_rng(seed)
  shapes = trace(create(name, **options), (1, *input_shape(name))).shapes

  def fill(path, leaf):
    if path[-1].key == "kernel":  # He-like scale keeps activations finite
      value = rng.normal(0.0, 1.0, leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
    elif path[-1].key in ("scale", "var"):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    else:
      value = rng.normal(0.0, 0.1, leaf.shape)
    return value.astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def to_torchvision(variables: dict, underscores_are_dots: bool = True) -> dict[str, np.ndarray]:
  """A torchvision-style state dict from our variables (the inverse of the converter)."""
  state = {}
  for path, value in jax.tree_util.tree_flatten_with_path(variables)[0]:
    _, *modules, leaf = (p.key for p in path)
    prefix = ".".join(modules)
    if underscores_are_dots:
      prefix = prefix.replace("_", ".")
    value = np.asarray(value)
    if leaf == "kernel":
      value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    state[f"{prefix}.{TORCH_LEAF[leaf]}"] = np.ascontiguousarray(value)
    if leaf == "var":
      state[f"{prefix}.num_batches_tracked"] = np.array(100, np.int64)
  return state


def save_safetensors(state: dict, path) -> str:
  from safetensors.numpy import save_file
  save_file(state, str(path))
  return str(path)


def assert_same_variables(loaded, original):
  assert jax.tree.structure(loaded) == jax.tree.structure(original)
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(original)):
    assert a.dtype == b.dtype and np.array_equal(np.asarray(a), b)


ROUND_TRIP = [  # (model, options); small dense layers keep VGG and AlexNet cheap
    ("resnet18", {"num_classes": 10}),
    ("cifar_resnet20", {"shortcut": "projection"}),
    ("alexnet", {"dense_units": 64, "num_classes": 10}),
    ("vgg11_bn", {"dense_units": 64, "num_classes": 10}),
    ("googlenet", {"aux_logits": True, "num_classes": 10}),
    ("inception_v3", {"num_classes": 10}),
]


@pytest.mark.parametrize("name, options", ROUND_TRIP)
def test_safetensors_round_trip(tmp_path, name, options):
  pytest.importorskip("safetensors")
  original = random_variables(name, **options)
  state = to_torchvision(original, underscores_are_dots=not name.startswith("inception"))
  path = save_safetensors(state, tmp_path / f"{name}.safetensors")
  model, loaded = load_pretrained(name, path, **options)
  assert_same_variables(loaded, original)
  if name in ("resnet18", "cifar_resnet20"):  # the same weights give the same outputs
    images = np.random.default_rng(1).uniform(size=(BATCH, 32, 32, 3)).astype(np.float32)
    apply = jitted_apply(name, **options)
    np.testing.assert_array_equal(apply(loaded, images), apply(original, images))


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, np.ndarray]:
  pytest.importorskip("safetensors")
  return to_torchvision(random_variables("resnet18", num_classes=10))


@pytest.mark.parametrize("edit, name, message", [
    pytest.param(lambda s: s.pop("layer2.0.downsample.1.running_var"), "resnet18",
                 r"missing 'layer2\.0\.downsample\.1\.running_var'; expected a \[128\] tensor",
                 id="missing"),
    pytest.param(lambda s: s.update({"fc2.weight": np.zeros((10, 512), np.float32)}),
                 "resnet18", r"unexpected 'fc2\.weight' \(1 unexpected keys", id="unexpected"),
    pytest.param(lambda s: s.update({"layer3.1.conv2.weight": np.zeros((256, 256, 1, 1),
                                                                       np.float32)}),
                 "resnet18", r"'layer3\.1\.conv2\.weight' has shape \[256, 256, 1, 1\], "
                             r"expected \[256, 256, 3, 3\] \(\[out, in, kh, kw\]\)",
                 id="shape"),
    pytest.param(lambda s: None, "resnet34",  # resnet18's file
                 r"missing 'layer1\.2\.conv1\.weight'; expected a \[64, 64, 3, 3\] tensor",
                 id="architecture"),
    pytest.param(lambda s: s.update({"fc.bias": np.zeros(10, np.int32)}), "resnet18",
                 r"'fc\.bias' has dtype int32, expected floats", id="dtype"),
])
def test_state_dict_mismatches(tmp_path, resnet18_state, edit, name, message):
  state = dict(resnet18_state)
  edit(state)
  path = save_safetensors(state, tmp_path / "broken.safetensors")
  with pytest.raises(WeightFileError, match=message) as error:
    load_pretrained(name, path, num_classes=10)
  assert isinstance(error.value, CnnJaxError)


def test_bad_paths(tmp_path):
  with pytest.raises(WeightFileError, match="Cannot tell the format"):
    load_pretrained("resnet18", str(tmp_path / "weights.npz"))
  with pytest.raises(WeightFileError, match="No weight file"):
    load_pretrained("resnet18", str(tmp_path / "absent.safetensors"))


# -------------------------------------------------------------------------------- torch


class NotATensor:
  """Anything but a tensor: ``torch.load(weights_only=True)`` must refuse to build it."""


def test_pth_round_trip_and_refusal(tmp_path, resnet18_state):
  torch = pytest.importorskip("torch")
  state = {k: torch.from_numpy(v) for k, v in resnet18_state.items()}
  torch.save(state, tmp_path / "resnet18.pth")
  _, loaded = load_pretrained("resnet18", str(tmp_path / "resnet18.pth"), num_classes=10)
  assert_same_variables(loaded, random_variables("resnet18", num_classes=10))

  torch.save({**state, "extra": NotATensor()}, tmp_path / "pickled.pt")
  with pytest.raises(WeightFileError, match="only tensors are loaded"):
    load_pretrained("resnet18", str(tmp_path / "pickled.pt"), num_classes=10)
  torch.save({**state, "epoch": 3}, tmp_path / "checkpoint.pt")
  with pytest.raises(WeightFileError, match="entry 'epoch' \\(int\\) is not a tensor"):
    load_pretrained("resnet18", str(tmp_path / "checkpoint.pt"), num_classes=10)


def import_torchvision():
  """torchvision, or a skip: its PyPI wheel fails to import next to a CPU-only torch."""
  try:
    import torchvision
  except Exception as e:  # ImportError, or RuntimeError "operator torchvision::nms ..."
    pytest.skip(f"torchvision does not import here: {e}")
  return torchvision


@pytest.mark.parametrize("name, options, size", [  # options: ours and torchvision's
    ("resnet18", {}, 64),
    ("alexnet", {}, 64),
    ("vgg11_bn", {}, 32),
    ("googlenet", {"aux_logits": True}, 64),
    ("inception_v3", {"aux_logits": True}, 75),
])
def test_torchvision_parity(tmp_path, name, options, size):
  torchvision = import_torchvision()
  import torch
  torch.manual_seed(0)
  init = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}
  reference = getattr(torchvision.models, name)(weights=None, **init, **options)
  for module in reference.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      for tensor, low, high in ((module.weight, 0.5, 1.5), (module.bias, -0.1, 0.1),
                                (module.running_mean, -0.1, 0.1), (module.running_var, 0.5, 1.5)):
        tensor.data.uniform_(low, high)
  reference.eval()
  torch.save(reference.state_dict(), tmp_path / f"{name}.pth")
  model, variables = load_pretrained(name, str(tmp_path / f"{name}.pth"), **options)
  images = np.random.default_rng(0).uniform(size=(BATCH, size, size, 3)).astype(np.float32)
  with torch.no_grad():
    expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  logits, _ = model.apply(variables, images, train=False)
  assert relative_error(logits, expected) <= TOLERANCE


if __name__ == "__main__":  # the Keras side of test_keras_parity, in its own process
  write_keras_references(sys.argv[1])
