"""DRAW, small: a CPU-sized twin of configs/draw_mnist.py (about 10 min on 2 cores).

64 units, 16 glimpses, latent 20, batch 64, 1,000 updates, Adam 1e-3 (1e-2 is unstable at this
size for some variants in our runs); validation on 2,000 images. Not the paper's setting.
"""

from configs.draw_mnist import get_config as paper_config


def get_config():
    c = paper_config()
    c.data.batch_size = 64
    c.model.hidden_size = 64
    c.model.glimpses = 16
    c.model.latent_size = 20
    c.opt.learning_rate = 1e-3
    c.train.num_steps = 1000
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.eval_batches = 4
    c.train.checkpoint_every = 250
    return c
