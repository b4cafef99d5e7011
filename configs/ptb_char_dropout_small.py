"""Regularized character-level PTB, small: CPU-sized twin of configs/ptb_char_dropout.py."""

from configs.ptb_char_dropout import get_config as paper_config
from configs.ptb_char_small import get_config as small_table1


def get_config():
    c = paper_config()
    small = small_table1()
    c.data = small.data
    c.model.hidden_size = small.model.hidden_size
    c.train = small.train
    return c
