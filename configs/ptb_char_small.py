"""Character-level PTB, small: a CPU-sized twin of configs/ptb_char.py (about 10 min, 2 cores).

Same protocol (length-100 random windows, Adam 2e-3, inverse-time decay 1e-3 per update, clip
1.0, the paper's gammas) with 128 units, batch 32 and 1,500 updates (about 1 epoch), validation
on the first 20 batches of length-100 windows (256,000 characters of the validation split) every
500 updates. Results from it are small-config results, not the paper's setting.

    python train.py --config=configs/ptb_char_small.py --workdir=runs/ptb_char_small
"""

from configs.ptb_char import get_config as paper_config


def get_config():
    c = paper_config()
    c.data.batch_size = 32
    c.data.eval_batch_size = 128
    c.model.hidden_size = 128
    c.train.num_steps = 1500
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.eval_batches = 20
    c.train.checkpoint_every = 250
    return c
