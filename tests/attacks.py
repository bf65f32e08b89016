"""Attack code shared by the protocol tests and the malicious e2e party (tests/e2e/evil_party.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from appliance.mpc_party.protocols.dkls23 import ot_ext
from appliance.mpc_party.protocols.dkls23.common import OT_WIDTH, XI


def flipping_extend(column: Callable[[], int]):
    """A KOS receiver that flips bit (row XI, column()) of U and proves the flipped U: the honest
    sender's check then passes iff its Delta bit of that column is 0 (one bit per session)."""
    def extend(seeds0, seeds1, pair, choices):
        m = choices.shape[0]
        nb = m // 8
        t0 = np.frombuffer(b"".join(ot_ext.prg(s, pair, nb) for s in seeds0), dtype=np.uint8).reshape(OT_WIDTH, nb)
        t1 = np.frombuffer(b"".join(ot_ext.prg(s, pair, nb) for s in seeds1), dtype=np.uint8).reshape(OT_WIDTH, nb)
        u = t0 ^ t1 ^ np.packbits(choices)
        row = XI  # the first padding row: its choice bit is random, nothing of the product is lost
        u[column(), row // 8] ^= np.uint8(1 << (7 - row % 8))
        u_bytes = u.tobytes()
        rows = ot_ext._columns_to_rows(t0)
        chi = ot_ext._challenge_bits(pair, u_bytes, m)
        x_tilde = ot_ext._bits_to_int((choices.astype(np.int64) @ chi.astype(np.int64) & 1).astype(np.uint8))
        t_tilde = ot_ext.gf_inner(rows, chi)
        return u_bytes, x_tilde.to_bytes(16, "big") + t_tilde.to_bytes(16, "big"), rows
    return extend
