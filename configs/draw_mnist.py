"""DRAW on binarized MNIST, Table 3 of Laurent et al. (2017), at paper scale.

Encoder and decoder LSTMs of 256 units, read attention 2x2, write attention 5x5, 64 glimpses,
latent size 100; Adam 1e-2 with decay 1e-3, batch 128, 200 epochs; gammas 0.5 for normprop
(the paper's DRAW setting) and weight norm; layer norm and batch norm keep their own initial
gammas (1 and 0.1).

Where the paper is silent, this config follows the first author's released DRAW code
(Thrandis/draw, train-draw.py), the only concrete source for these settings:
  * decay: inverse time per update, lr / (1 + 1e-3 k) (2.6e-5 after 200 epochs of 390 updates;
    an exponential decay of 1e-3 per update would divide the rate by e^78);
  * gradient clipping: global norm 10 (Blocks' StepClipping(10.) before Adam).
The released code also starts the forget-gate bias at 1 and trains the initial states; here the
forget bias stays 0 (the normprop variance constants assume a zero bias) and the initial states
are zeros: set --config.model.forget_bias=1 for the released setting.
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
    c.model.gamma_variants = "normprop,weightnorm"  # the others keep their own defaults
    c.opt.learning_rate = 1e-2
    c.opt.schedule = "inverse_time"
    c.opt.decay = 1e-3
    c.opt.decay_every = "update"
    c.opt.clip_norm = 10.0
    c.train.num_steps = 200 * 390
    c.train.log_every = 100
    c.train.eval_every = 390 * 5
    c.train.checkpoint_every = 390
    return c
