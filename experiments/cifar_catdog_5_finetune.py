"""Transfer-learning study on CIFAR-10 cats vs dogs, step 5: from step 4's run, the last
stage unfrozen next to the head and fine-tuned at a lower learning rate (3e-4 against
1e-3), with augmentation.

Paths to the other runs assume the study's layout under runs/transfer (``python -m cnn_jax
study transfer --workdir DIR`` sets them for DIR). ``:digits`` is the seconds-long version
(digits 8 vs 9). See cnn_jax/transfer/study.py.

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/cifar_catdog_5_finetune.py --workdir runs/transfer/5_finetune
"""

from cnn_jax.transfer.study import Setup, step_config


def get_config(variant: str = ""):
  return step_config("5_finetune", Setup(variant))
