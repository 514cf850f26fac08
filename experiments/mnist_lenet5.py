"""LeNet-5 on MNIST (60k/10k) from an .npz file, 28x28 zero-padded to 32x32 as in the paper.

Needs mnist.npz (x_train, y_train, x_test, y_test) in the data directory:

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_lenet5.py --workdir runs/mnist_lenet5
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "npz"
  config.dataset.file = "mnist.npz"
  config.dataset.data_dir = ""           # empty: use $CNN_JAX_DATA_DIR
  config.dataset.image_size = 32
  config.dataset.resize = "pad"
  config.dataset.mean = 0.1307
  config.dataset.std = 0.3081
  config.dataset.val_fraction = 5000     # examples held out of the 60k for validation
  config.dataset.test_fraction = 0.0     # 0: use the file's own 10k test split

  config.model = ml_collections.ConfigDict()
  config.model.name = "lenet5"
  config.model.dtype = "float32"     # "bfloat16": bf16 compute, f32 params/BN stats/loss
  config.model.act = "relu"
  config.model.pool = "max"

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.weight_decay = 0.0

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "warmup_cosine"
  config.schedule.warmup_epochs = 1

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 12
  config.train.batch_size = 128
  config.train.eval_batch_size = 1000
  config.train.label_smoothing = 0.0
  config.train.num_devices = 0
  config.train.on_device_data = False  # True: keep the train split on the device, gather in jit
  config.train.checkpoint_every_steps = 0
  config.train.keep_checkpoints = 2
  config.train.best_metric = "val_accuracy"
  config.train.best_mode = "max"
  config.train.log_every_steps = 50
  config.train.progress = True
  return config
