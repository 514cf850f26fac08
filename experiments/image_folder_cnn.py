"""The simple CNN on a folder of your own photos: one subfolder per class.

Point ``dataset.directory`` at the folder. To try it offline, make a two-class folder of
patches cut from scikit-learn's bundled photos first:

  python -c "from cnn_jax.data.sample_folder import make_sample_folder as m; m('runs/photos')"
  python -m cnn_jax train --config experiments/image_folder_cnn.py --workdir runs/photos_cnn \\
      --config.dataset.directory=runs/photos
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.augment import augment_config


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "image_folder"
  config.dataset.directory = "runs/photos"
  config.dataset.image_size = 32
  config.dataset.channels = 3
  config.dataset.center_crop = True
  config.dataset.skip_corrupt = False
  config.dataset.val_fraction = 0.15
  config.dataset.test_fraction = 0.2

  config.augment = augment_config(flip=True, crop_padding=2, brightness=0.2, contrast=0.2)

  config.model = ml_collections.ConfigDict()
  config.model.name = "simple_cnn"
  config.model.dtype = "float32"
  config.model.base_channels = 16
  config.model.num_blocks = 3
  config.model.dense_units = (64,)
  config.model.dropout_rate = 0.3
  config.model.head = "gap"

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.weight_decay = 0.0

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "cosine"

  config.train = train_section(epochs=8, batch_size=16, eval_batch_size=64, log_every_steps=5)
  return config
