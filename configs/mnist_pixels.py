"""Sequential pixel MNIST (Cooijmans et al. 2016's setting; not in Laurent et al. 2017).

784 pixels one per step, one LSTM layer of 100 units, classification from the last state; batch
64, Adam 1e-3, clipping 1.0, no decay. ``--config.data.permute=True`` for permuted MNIST.

Normprop uses the critical gamma initialization (gamma_h at the edge of stability, about
(2, 1.32, 1)): with the paper's PTB gammas (2, 2, 1) the gradient grows about 1.2x per step, and
over 784 steps it overflows (an infinite gradient norm within 20 updates on the small config).
"""

from nprnn.configs import base_config


def get_config():
    c = base_config()
    c.task = "seqmnist"
    c.data.batch_size = 64
    c.data.eval_batch_size = 500
    c.model.variant = "normprop"
    c.model.hidden_size = 100
    c.model.gamma_init = "critical"  # normprop only; the other variants keep their gammas
    c.opt.learning_rate = 1e-3
    c.opt.decay = 0.0
    c.train.num_steps = 50 * 859
    c.train.log_every = 100
    c.train.eval_every = 859
    c.train.checkpoint_every = 859
    return c
