"""Models over any nprnn LSTM variant: character LM, DRAW, sequential-MNIST classifier; imports
its own modules.

May import from nprnn: its own modules (``charlm``, ``draw`` with ``attention`` and
``draw_params``, ``seqmnist``; ``_states``, the start state they share), which import the
package's public functions.
"""

from nprnn.models import attention, charlm, draw, draw_params, seqmnist

__all__ = ["attention", "charlm", "draw", "draw_params", "seqmnist"]
