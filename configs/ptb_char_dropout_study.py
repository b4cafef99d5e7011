"""Regularized character-level PTB, the study config: Table 2's regularization at CPU size.

configs/ptb_char_study.py (batch 32, 7,800 updates, inverse-time decay 1e-3 per update, clipping
at 1, validation every epoch) at H = 256, plus the paper's regularization as in
configs/ptb_char_dropout.py: input and output dropout 0.1, recurrent dropout 0.1 on the cell
candidate, batch data normalization of the inputs. The schedule stays the study's, so that a row
differs from the same row of the width series (scripts/study_lr.sh, HIDDEN=256) in the
regularization alone. Results from it are small-config results, not the paper's setting.
scripts/study_table2.sh runs the study; its number is test bpc on the whole test split as one
stream (``python eval.py --workdir=... --split=test --protocol=stream``).
"""

from configs.ptb_char_dropout import get_config as table2_config
from configs.ptb_char_study import get_config as study_config


def get_config():
    c = study_config()
    regularized = table2_config().model
    for field in ("input_dropout", "output_dropout", "recurrent_dropout", "input_norm"):
        c.model[field] = regularized[field]
    c.model.hidden_size = 256
    return c
