"""CPU of a signing session's protocol envelopes, seal and gate check, on a throwaway SoftHSM token.

    envelope.v1_session_cpu_ms   version 1: the HSM identity key signs every envelope (worker thread)
    envelope.v2_session_cpu_ms   version 2: an in-memory envelope key, certified once by the identity key

One "session" is what one DKLs23 2-of-3 signer sends its peer: four envelopes with the payload sizes of
the `dkls23-sign` rounds (limits.py), each sealed and then accepted by a gate, as the sending and the
receiving party would. CPU is the process's (every thread, so the HSM worker's share counts), per
session; a wall-clock rate would mostly measure the host's load.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from appliance.hsm import Hsm
from appliance.hsm.softhsm import activated, init_token, make_token_dir
from appliance.mpc_party.envelope import Gate, Outbox
from appliance.mpc_party.envelope_cert import EnvelopeKeys
from appliance.mpc_party.limits import limits_for
from bench.common import Result

SESSIONS = 300


def run() -> list[Result]:
    with (
        tempfile.TemporaryDirectory(prefix="zrk-bench-env-") as tmp,
        activated(make_token_dir(Path(tmp))) as conf,
    ):
        token = init_token(conf)
        with Hsm.connect(token.module, token.label, token.user_pin) as hsm:
            hsm.provision()
            return _measure(hsm)


def _session(outbox: Outbox, gate: Gate, payloads: dict[int, bytes]) -> None:
    sid = os.urandom(32)
    gate.open_session(sid)
    for round_, payload in payloads.items():
        env = outbox.seal(sid, "dkls23-sign", round_, 2, payload)
        if not gate.offer(env.encode(), tls_party=1).accepted:
            raise RuntimeError("bench envelope refused")
    gate.close_session(sid)


def _cpu_ms_per_session(outbox: Outbox, gate: Gate) -> float:
    limits, _ = limits_for("dkls23-sign", 3)
    payloads = {r: os.urandom(limits.max_payload(r) or 0) for r in sorted(limits.rounds)}
    for _ in range(10):
        _session(outbox, gate, payloads)
    start = time.process_time()
    for _ in range(SESSIONS):
        _session(outbox, gate, payloads)
    return (time.process_time() - start) / SESSIONS * 1e3


def _measure(hsm: Hsm) -> list[Result]:
    identity = {1: hsm.identity_public_key()}
    v1 = _cpu_ms_per_session(Outbox(1, hsm.sign_identity), Gate(2, identity, cluster="bench"))
    keys = EnvelopeKeys(1, "bench", hsm.sign_identity, random=hsm.random)
    v2 = _cpu_ms_per_session(Outbox(1, keys), Gate(2, identity, cluster="bench"))
    note = f"4 envelopes of dkls23-sign round sizes, seal + gate accept, process CPU; load {os.getloadavg()[0]:.1f}"
    return [
        Result("envelope.v1_session_cpu_ms", round(v1, 3), "ms", note=note + "; SoftHSM signature each"),
        Result("envelope.v2_session_cpu_ms", round(v2, 3), "ms",
               note=note + f"; {keys.rotations} SoftHSM signature in all"),
    ]
