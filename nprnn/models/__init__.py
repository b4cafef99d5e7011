"""Models over any nprnn LSTM variant: character LM, DRAW, sequential-MNIST classifier."""

from nprnn.models import charlm, draw, seqmnist

__all__ = ["charlm", "draw", "seqmnist"]
