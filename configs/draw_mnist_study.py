"""DRAW on binarized MNIST, the study config: Table 3 with the released code's training settings
at a size that trains on 2 CPU cores.

As configs/draw_mnist_small.py (64 units, 16 glimpses, latent 20, batch 64, Adam 1e-3: 1e-2 was
unstable at this size for some variants), with the settings of the authors' released DRAW code
(Thrandis/draw, train-draw.py) where the paper is silent:
  * inverse-time decay lr / (1 + 1e-3 k) per update, global-norm clipping at 10;
  * weight-normalized linear layers (a gamma each, unit-norm columns after every update);
  * forget-gate bias 1 (the initial states are zeros here; the released code trains them);
  * gammas 0.5 for normprop and weight norm, the other variants at their own defaults;
and 3 seeds in one process (train.num_seeds = 3), 1,000 updates (1.3 epochs, the budget of the
small config), validation on the whole validation split every 500 updates. Small-config results,
not the paper's setting. scripts/study_table3.sh runs every row.
"""

from configs.draw_mnist_small import get_config as small_config


def get_config():
    c = small_config()
    c.model.weight_norm_linear = True
    c.model.forget_bias = 1.0
    c.opt.schedule = "inverse_time"
    c.opt.decay = 1e-3
    c.opt.decay_every = "update"
    c.opt.clip_norm = 10.0
    c.train.num_seeds = 3
    c.train.num_steps = 1000
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.eval_batches = 0
    c.train.checkpoint_every = 250
    return c
