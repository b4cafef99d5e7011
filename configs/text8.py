"""text8 character LM at the scale of Cooijmans et al. (2016) (not in Laurent et al. 2017).

One LSTM layer of 2000 units (about 16M parameters), length-180 windows, batch 128, Adam 1e-3
with decay 1e-3 per epoch... of 90M / (128 x 180) = 3,906 updates, clipping 1.0. Where the papers
are silent these are our choices. Reference test bpc: batch-norm LSTM 1.36 (Cooijmans et al.).
text8 is not in the offline data here: put ``text8`` or ``text8.zip`` in DATA_DIR/text8/.
"""

from nprnn.configs import base_config


def get_config():
    c = base_config()
    c.task = "text8"
    c.data.batch_size = 128
    c.data.eval_batch_size = 128
    c.data.seq_len = 180
    c.model.variant = "normprop"
    c.model.hidden_size = 2000
    c.opt.learning_rate = 1e-3
    c.opt.decay = 1e-3
    c.opt.decay_every = "epoch"
    c.train.num_steps = 20 * 3906
    c.train.log_every = 100
    c.train.eval_every = 3906
    c.train.eval_batches = 200
    c.train.checkpoint_every = 1000
    return c
