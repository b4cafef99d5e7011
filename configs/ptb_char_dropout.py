"""Regularized character-level PTB, Table 2 of Laurent et al. (2017), at paper scale.

As configs/ptb_char.py plus input and output dropout 0.1, recurrent dropout 0.1 on the cell
candidate (Semeniuta et al. 2016), "batch data normalization" of the inputs, and a learning-rate
decay of 1e-4 per update. The paper reports test bpc on the full test sequence: evaluate with
``python eval.py --workdir=... --protocol=stream``.
"""

from configs.ptb_char import get_config as table1_config


def get_config():
    c = table1_config()
    c.model.input_dropout = 0.1
    c.model.output_dropout = 0.1
    c.model.recurrent_dropout = 0.1
    c.model.input_norm = True
    c.opt.decay = 1e-4
    return c
