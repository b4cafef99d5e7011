"""text8, small: a CPU-sized twin of configs/text8.py (minutes on 2 cores; not a paper result)."""

from configs.text8 import get_config as paper_config


def get_config():
    c = paper_config()
    c.data.batch_size = 32
    c.data.seq_len = 100
    c.model.hidden_size = 128
    c.opt.decay_every = "update"
    c.train.num_steps = 1500
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.eval_batches = 20
    c.train.checkpoint_every = 250
    return c
