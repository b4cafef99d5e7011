"""The state a model's LSTM starts a sequence from, trained or zeros; imports nprnn.

May import from nprnn: the package's public functions (``nprnn.broadcast_state``,
``nprnn.init_state``).
"""

from __future__ import annotations

import nprnn


def start_state(initial, batch_size: int, hidden_size: int, dtype) -> nprnn.LSTMState:
    """``initial``, a trained ``{"h" [H], "c" [H]}`` (``model.learn_initial_state``), broadcast to
    the batch; zeros when ``initial`` is None."""
    if initial is None:
        return nprnn.init_state(batch_size, hidden_size, dtype)
    return nprnn.broadcast_state(initial, batch_size, dtype)
