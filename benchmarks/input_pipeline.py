"""Input-pipeline throughput: grain batches from an npz, JPEG-CIFAR decode and cache, an
image folder, and the on-device path with augmentation inside jit.

  python benchmarks/input_pipeline.py --data-dir /work/shared/data [--steps 300]

The data directory (``mnist.npz``, ``cifar10_jpeg.npz``) comes from ``--data-dir`` or
``$CNN_JAX_DATA_DIR``. Prints one JSON object; rates are images per second.
"""

import argparse
import json
import os
import platform
import tempfile
import time

import jax
import ml_collections
import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

from cnn_jax.data import augment, device_data, pipeline, preprocess, sources
from cnn_jax.data import image_folder, local_files  # noqa: F401  (they register their sources)

BATCH = 128


def timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def grain_rate(images: np.ndarray, labels: np.ndarray, steps: int) -> float:
  """Images/s of iterating ``pipeline.train_batches`` on the host."""
  batches = iter(pipeline.train_batches(images, labels, batch_size=BATCH, seed=0,
                                        num_steps=steps))
  next(batches)
  _, seconds = timed(lambda: [b["image"].sum() for b in batches])
  return (steps - 1) * BATCH / seconds


def bench_mnist(data_dir: str, steps: int) -> dict:
  cfg = ml_collections.ConfigDict(dict(name="npz", file="mnist.npz", data_dir=data_dir))
  data, load_s = timed(lambda: sources.load(cfg))
  x, prep_s = timed(lambda: preprocess.to_model_input(data.train_images, cfg))
  return {"load_s": round(load_s, 3), "to_float_s": round(prep_s, 3),
          "grain_batches_images_per_s": round(grain_rate(x, data.train_labels, steps))}


def bench_cifar_jpeg(data_dir: str, cache_dir: str, steps: int) -> tuple[dict, sources.ArrayData]:
  out = {}
  for workers in (1, 2):
    cfg = ml_collections.ConfigDict(dict(name="cifar10_jpeg", data_dir=data_dir,
                                         cache_dir=os.path.join(cache_dir, str(workers)),
                                         decode_workers=workers))
    _, out[f"first_load_decode_s_{workers}_threads"] = timed(lambda: sources.load(cfg))
  data, out["cached_load_s"] = timed(lambda: sources.load(cfg))
  out = {k: round(v, 3) for k, v in out.items()}
  x = preprocess.to_model_input(data.train_images, cfg)
  out["grain_batches_images_per_s"] = round(grain_rate(x, data.train_labels, steps))
  return out, data


def bench_image_folder(root: str, count: int = 2000, size: int = 64) -> dict:
  """Writes ``count`` JPEG patches (``size`` x ``size``, 10 classes) cut from sklearn's photos."""
  photos = load_sample_images().images
  rng = np.random.default_rng(0)
  for i in range(count):
    photo = photos[i % 2]
    y, x = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
    folder = os.path.join(root, f"class{i % 10}")
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(photo[y:y + size, x:x + size]).save(os.path.join(folder, f"{i}.jpg"))
  out = {"images": count, "file_size": size}
  for workers in (1, 2):
    for target in (size, 32):
      cfg = ml_collections.ConfigDict(dict(name="image_folder", directory=root,
                                           image_size=target, decode_workers=workers))
      data, seconds = timed(lambda: sources.load(cfg))
      assert data.train_images.shape == (count, target, target, 3)
      out[f"to_{target}px_{workers}_threads_images_per_s"] = round(count / seconds)
  return out


def bench_on_device(data: sources.ArrayData, steps: int) -> dict:
  """CIFAR-10 train split on the device; gather + flip/crop/cutout inside one jit."""
  aug = augment.make_augment(dict(flip=True, crop_padding=4, cutout_size=8))
  n = len(data.train_labels)
  steps_per_epoch = n // BATCH
  labels_onehot = lambda y: jax.nn.one_hot(y, data.num_classes)

  @jax.jit
  def step(images, labels, perm, key, i):
    x, y = device_data.gather_batch(images, labels, perm, i, BATCH)
    x, y = aug(jax.random.fold_in(key, i), x, labels_onehot(y))
    return augment.normalize(x, "cifar10").mean() + y.mean()  # stands in for a train step

  def run(first: int, last: int) -> jax.Array:
    epoch = perm = None
    for i in range(first, last):
      if i // steps_per_epoch != epoch:  # one permutation per epoch, made on the device
        epoch = i // steps_per_epoch
        perm = permutation(key, epoch, n)
      out = step(images, labels, perm, key, i)
    return out.block_until_ready()

  permutation = jax.jit(device_data.epoch_permutation, static_argnums=2)
  (images, labels), put_s = timed(lambda: jax.block_until_ready(
      device_data.put_on_device(data.train_images, data.train_labels)))
  key = jax.random.key(0)
  _, compile_s = timed(lambda: run(0, 1))
  _, seconds = timed(lambda: run(1, steps + 1))

  @jax.jit
  def host_step(x, y, key):
    x, y = aug(key, x, labels_onehot(y))
    return augment.normalize(x, "cifar10").mean() + y.mean()

  batches = pipeline.train_batches(data.train_images, data.train_labels, batch_size=BATCH,
                                   seed=0, num_steps=steps + 1)
  it = iter(batches)
  first = next(it)
  host_step(first["image"].astype(np.float32) / 255, first["label"], key).block_until_ready()
  _, host_s = timed(lambda: [host_step(b["image"].astype(np.float32) / 255, b["label"], key)
                             for b in it][-1].block_until_ready())
  return {"device": str(jax.devices()[0]), "put_on_device_s": round(put_s, 3),
          "compile_s": round(compile_s, 3),
          "gather_augment_images_per_s": round(steps * BATCH / seconds),
          "host_grain_uint8_then_device_augment_images_per_s": round(steps * BATCH / host_s)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", default=os.environ.get(sources.DATA_DIR_ENV))
  parser.add_argument("--steps", type=int, default=300)
  args = parser.parse_args()
  if not args.data_dir:
    parser.error(f"pass --data-dir or set ${sources.DATA_DIR_ENV}")
  result = {"machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg(),
                        "python": platform.python_version(), "jax": jax.__version__,
                        "numpy": np.__version__, "pillow": Image.__version__},
            "batch_size": BATCH, "steps": args.steps}
  result["mnist_npz"] = bench_mnist(args.data_dir, args.steps)
  with tempfile.TemporaryDirectory() as tmp:
    result["cifar10_jpeg"], cifar = bench_cifar_jpeg(args.data_dir, tmp, args.steps)
    result["image_folder"] = bench_image_folder(os.path.join(tmp, "folder"))
  result["on_device"] = bench_on_device(cifar, args.steps)
  result["machine"]["load_avg_end"] = os.getloadavg()
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
