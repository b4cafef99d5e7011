"""DRAW on binarized MNIST, Table 3 of Laurent et al. (2017), at paper scale.

Encoder and decoder LSTMs of 256 units, read attention 2x2, write attention 5x5, 64 glimpses,
latent size 100; Adam 1e-2 with decay 1e-3, batch 128, 200 epochs; gammas 0.5 for the normalized
variants (the paper's DRAW setting for norm prop; we use it for weight norm too). The paper does
not say whether the decay is per update or per epoch: per epoch here (per update, 1e-3 would
divide the rate by e^78 over 200 epochs of 390 updates).
"""

from nprnn.configs import base_config


def get_config():
    c = base_config()
    c.task = "draw"
    c.data.batch_size = 128
    c.data.eval_batch_size = 500
    c.model.variant = "normprop"
    c.model.hidden_size = 256
    c.model.latent_size = 100
    c.model.glimpses = 64
    c.model.read_n = 2
    c.model.write_n = 5
    c.model.gamma_x = 0.5
    c.model.gamma_h = 0.5
    c.model.gamma_c = 0.5
    c.opt.learning_rate = 1e-2
    c.opt.decay = 1e-3
    c.opt.decay_every = "epoch"
    c.opt.clip_norm = 0.0
    c.train.num_steps = 200 * 390
    c.train.log_every = 100
    c.train.eval_every = 390 * 5
    c.train.checkpoint_every = 390
    return c
