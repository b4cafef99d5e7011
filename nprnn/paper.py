"""The paper's published numbers and settings, as pure data; imports nothing (no ``nprnn``, no I/O).

Hard-coded: they are the values printed in Laurent, Ballas, Vincent, "Recurrent Normalization
Propagation" (ICLR 2017 workshop track), as restated in /work/shared/PAPER.md, not something this
code measured. :mod:`nprnn.reports` lays our runs beside them and :mod:`nprnn.plots` marks the
paper's gammas on Figure 1.

References:
  C. Laurent, N. Ballas, P. Vincent. Recurrent Normalization Propagation. ICLR 2017 workshop
  track: section 5, Table 1, Table 2, Table 3, Figures 1-3.
"""

from __future__ import annotations

__all__ = [
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "GREGOR_DRAW_NATS",
    "VARIANT_NAMES",
    "PAPER_SETTINGS",
    "PAPER_GAMMAS",
    "TABLE2_REGULARIZATION",
    "TABLE_EVAL",
    "FIGURE_CURVES",
    "FIGURE1_POINTS",
]

#: Table 1: char-level PTB, validation bpc on length-100 sequences, seconds per training epoch on
#: the authors' GPU, and time relative to the baseline. ``variant -> (row, bpc, s/epoch, ratio)``.
PAPER_TABLE1 = {
    "lstm": ("Baseline", 1.455, 386.0, 1.00),
    "weightnorm": ("Weight Norm", 1.438, 402.0, 1.04),
    "batchnorm": ("Batch Norm", 1.433, 545.0, 1.41),
    "layernorm": ("Layer Norm", 1.439, 530.0, 1.37),
    "normprop": ("Norm Prop", 1.422, 413.0, 1.07),
}

#: Table 2: regularized char-level PTB, test bpc on the full test sequence. Rows in the paper's
#: order as ``(row, bpc, our closest variant or None)``; only "Norm Prop LSTM" is the paper's own
#: model, the others are numbers the paper quotes from other work.
PAPER_TABLE2 = (
    ("Recurrent Dropout LSTM", 1.301, "lstm"),
    ("Zoneout LSTM", 1.27, None),
    ("Layer Norm LSTM", 1.267, "layernorm"),
    ("HyperLSTM", 1.265, None),
    ("Layer Norm HyperLSTM", 1.250, None),
    ("Norm Prop LSTM", 1.262, "normprop"),
)

#: Table 3: DRAW on binarized MNIST, test variational bound in nats after 200 epochs.
#: ``variant -> (row, nats)``; Gregor et al. (2015) report 80.97 for DRAW with attention.
PAPER_TABLE3 = {
    "lstm": ("Baseline", 84.30),
    "layernorm": ("Layer Norm", 82.09),
    "weightnorm": ("Weight Norm", 81.98),
    "normprop": ("Norm Prop", 81.17),
}
GREGOR_DRAW_NATS = 80.97

#: Row names for variants without a paper row.
VARIANT_NAMES = {
    "lstm": "Baseline",
    "weightnorm": "Weight Norm",
    "batchnorm": "Batch Norm",
    "layernorm": "Layer Norm",
    "normprop": "Norm Prop",
}

#: The paper's setting for each table: config fields that, when different, make a result a
#: different (usually smaller) setting. Gammas are per variant (section 5).
PAPER_SETTINGS = {
    1: {"task": ("ptb_char",), "hidden_size": 1000, "seq_len": 100, "learning_rate": 2e-3},
    2: {"task": ("ptb_char",), "hidden_size": 1000, "seq_len": 100, "learning_rate": 2e-3},
    3: {
        "task": ("draw",),
        "hidden_size": 256,
        "glimpses": 64,
        "latent_size": 100,
        "learning_rate": 1e-2,
    },
}
PAPER_GAMMAS = {
    1: {"normprop": (2.0, 2.0, 1.0), "layernorm": (1.0, 1.0, 1.0), "batchnorm": (0.1, 0.1, 0.1)},
    3: {"normprop": (0.5, 0.5, 0.5), "weightnorm": (0.5, 0.5, None)},
}
PAPER_GAMMAS[2] = PAPER_GAMMAS[1]

#: Table 2's regularization (section 5.1): dropout 0.1 on inputs, outputs and the cell candidate,
#: batch data normalization of the inputs.
TABLE2_REGULARIZATION = {
    "input_dropout": 0.1,
    "output_dropout": 0.1,
    "recurrent_dropout": 0.1,
    "input_norm": True,
}

#: What each table reads: ``table -> (split, protocol, metric)``.
TABLE_EVAL = {
    1: ("valid", "windows", "bpc"),
    2: ("test", "stream", "bpc"),
    3: ("test", None, "nats"),
}

#: Figures 2 and 3 (learning curves): ``figure -> (metric, title)``.
FIGURE_CURVES = {
    2: ("bpc", "Figure 2: char-level PTB"),
    3: ("nats", "Figure 3: DRAW on binarized MNIST"),
}

#: The gammas the paper trains with (section 5), marked on Figure 1:
#: ``(gamma_x, gamma_h, gamma_c, label)``.
FIGURE1_POINTS = ((2.0, 2.0, 1.0, "PTB (2, 2, 1)"), (0.5, 0.5, 0.5, "DRAW (0.5, 0.5, 0.5)"))
