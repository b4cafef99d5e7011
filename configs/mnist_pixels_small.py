"""Sequential pixel MNIST, small: CPU-sized twin of configs/mnist_pixels.py (minutes, 2 cores)."""

from configs.mnist_pixels import get_config as paper_config


def get_config():
    c = paper_config()
    c.data.batch_size = 32
    c.model.hidden_size = 32
    c.train.num_steps = 300
    c.train.log_every = 25
    c.train.eval_every = 150
    c.train.eval_batches = 2
    c.train.checkpoint_every = 150
    return c
