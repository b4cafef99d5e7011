"""The fields every training config has, with their units and defaults (see ``configs/``)."""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    """A config with every field the training loop reads; ``configs/*.py`` fill it in."""
    c = ml_collections.ConfigDict()
    c.task = ""  # one of nprnn.tasks.TASKS
    c.seed = 0  # everything random (init, batches, dropout) derives from it

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""  # "" = --data_dir, else $NPRNN_DATA_DIR, else ~/.cache/nprnn
    c.data.download = True  # download missing files from the canonical source (needs a network)
    c.data.verify = True  # check the SHA-256 of the data files (False for your own small files)
    c.data.batch_size = 64  # sequences (or images) per training batch
    c.data.eval_batch_size = 64  # sequences (or images) per evaluation batch
    c.data.seq_len = 100  # characters per training / evaluation window
    c.data.permute = False  # seqmnist: fixed random pixel permutation
    c.data.permutation_seed = 0  # seqmnist: seed of that permutation

    c.model = ml_collections.ConfigDict()
    c.model.variant = "normprop"  # one of nprnn.VARIANTS
    c.model.hidden_size = 1000  # units per LSTM layer
    c.model.num_layers = 1
    c.model.gamma_x = config_dict.placeholder(float)  # None: the variant's default
    c.model.gamma_h = config_dict.placeholder(float)
    c.model.gamma_c = config_dict.placeholder(float)
    c.model.variance_method = "analytic"  # normprop: "analytic" (paper) or "simulated"
    # normprop: "default" (the gammas above / the paper's) or "critical": gamma_h chosen at the
    # edge of stability for the given gamma_x, gamma_c (nprnn.gradient_flow.critical_gammas).
    c.model.gamma_init = "default"
    c.model.forget_bias = 0.0  # initial forget-gate bias
    c.model.bn_momentum = 0.99  # batchnorm population statistics: EMA weight of the old value
    c.model.input_dropout = 0.0  # char LM: dropout rate on the inputs
    c.model.output_dropout = 0.0  # char LM: dropout rate before the softmax
    c.model.recurrent_dropout = 0.0  # dropout rate on the cell candidate (Semeniuta et al.)
    c.model.input_norm = False  # char LM: "batch data normalization" of the inputs (Table 2)
    c.model.matmul_dtype = ""  # char LM: "bfloat16" for mixed-precision matmuls; "" = float32
    c.model.latent_size = 100  # DRAW: size of z
    c.model.glimpses = 64  # DRAW: T
    c.model.read_n = 2  # DRAW: read attention grid N x N
    c.model.write_n = 5  # DRAW: write attention grid N x N

    c.opt = ml_collections.ConfigDict()
    c.opt.learning_rate = 2e-3  # Adam step size at update 0
    c.opt.decay = 1e-3  # lr *= (1 - decay) per update or per epoch (continuously)
    c.opt.decay_every = "update"  # "update" or "epoch": the paper does not say which
    c.opt.clip_norm = 1.0  # global-norm gradient clipping (0 = off)
    c.opt.b1 = 0.9
    c.opt.b2 = 0.999
    c.opt.eps = 1e-8
    # Project w_x, w_h to unit-norm columns after every update (the paper's section 3.3); None:
    # on for weightnorm and normprop, off otherwise. Only those two variants allow it.
    c.opt.unit_norm_projection = config_dict.placeholder(bool)

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000  # updates
    c.train.log_every = 50  # updates between train-metric lines
    c.train.eval_every = 500  # updates between validation evaluations
    c.train.eval_batches = 0  # 0 = the whole validation split, else at most this many batches
    c.train.checkpoint_every = 500  # updates between checkpoints
    c.train.keep_checkpoints = 3
    c.train.data_parallel = True  # shard each batch over all devices (params replicated)
    return c


def unit_norm_projection(c: ml_collections.ConfigDict) -> bool:
    """Whether the run projects its weights to unit norm (``None`` resolved by the variant)."""
    if c.opt.unit_norm_projection is None:
        return c.model.variant in ("weightnorm", "normprop")
    return bool(c.opt.unit_norm_projection)
