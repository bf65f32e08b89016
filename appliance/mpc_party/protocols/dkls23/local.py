"""One-process driver: every party of a DKLs23 session in one process, messages passed through their
byte encodings as a transport would carry them. For tests, benchmarks and the demo.

`tamper(round_name, sender, recipient, data) -> data` (optional everywhere) lets a test play a
cheating or faulty network/peer by rewriting the bytes of any message in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from appliance.mpc_party.protocols.dkls23.keygen import KeygenSession, decode_keygen_message
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.dkls23.resetup import PairResetupSession, decode_resetup_message, resetup_session_id
from appliance.mpc_party.protocols.dkls23.sign import Presignature, Signature, SignSession, decode_sign_message
from appliance.mpc_party.protocols.group import Rng, default_rng
from appliance.mpc_party.protocols.wire import SESSION_ID_LEN

Tamper = Callable[[str, int, int, bytes], bytes]


def deliver(parties: dict, msgs: Sequence, decode: Callable, round_name: str,
            tamper: Tamper | None = None) -> None:
    """Encode each message, hand it (possibly rewritten) to its recipient(s) after decoding."""
    for msg in msgs:
        data = msg.to_bytes()
        targets = [j for j in parties if j != msg.sender] if msg.BROADCAST else [msg.recipient]
        for j in targets:
            wire = tamper(round_name, msg.sender, j, data) if tamper else data
            parties[j].receive(decode(wire, msg.sender))


def _run_keygen(sessions: list[KeygenSession], tamper: Tamper | None) -> list[Dkls23Key]:
    by_id = {s.me: s for s in sessions}
    for name in ("round1", "round2", "round3", "round4", "round5"):
        out = [m for s in sessions for m in getattr(s, name)()]
        deliver(by_id, out, decode_keygen_message, name, tamper)
    return [s.finish() for s in sessions]


def run_dkg(n: int, t: int, rng: Rng = default_rng, session_id: bytes | None = None,
            tamper: Tamper | None = None, participants: Sequence[int] | None = None) -> list[Dkls23Key]:
    """A whole t-of-n DKLs23 keygen among `participants` (default all n); returns their keys ordered
    by party id."""
    sid = session_id if session_id is not None else rng(SESSION_ID_LEN)
    chosen = sorted(participants) if participants is not None else range(1, n + 1)
    return _run_keygen([KeygenSession(sid, i, n, t, rng, participants=participants) for i in chosen], tamper)


def refresh(keys: Sequence[Dkls23Key], rng: Rng = default_rng, session_id: bytes | None = None,
            tamper: Tamper | None = None) -> list[Dkls23Key]:
    """Refresh all n keys: same public key, new shares and new OT setup."""
    sid = session_id if session_id is not None else rng(SESSION_ID_LEN)
    return _run_keygen([KeygenSession.for_refresh(k, sid, rng) for k in keys], tamper)


def presign(keys: Sequence[Dkls23Key], rng: Rng = default_rng, session_id: bytes | None = None,
            tamper: Tamper | None = None) -> list[Presignature]:
    """Rounds 1-2 among the holders of `keys` (the signer set); one presignature per signer."""
    sid = session_id if session_id is not None else rng(SESSION_ID_LEN)
    signers = [k.party_id for k in keys]
    sessions = {k.party_id: SignSession(k, sid, signers, rng) for k in keys}
    deliver(sessions, [s.round0() for s in sessions.values()], decode_sign_message, "sign0", tamper)
    for name in ("round1", "round2"):
        out = [m for s in sessions.values() for m in getattr(s, name)()]
        deliver(sessions, out, decode_sign_message, "sign" + name[-1], tamper)
    return [s.finish() for s in sessions.values()]


def sign(presigs: Sequence[Presignature], digest: bytes, tamper: Tamper | None = None) -> Signature:
    """Round 3 and combine; every party combines (and verifies) and all must agree."""
    by_id = {p.me: p for p in presigs}
    deliver(by_id, [p.round3(digest) for p in presigs], decode_sign_message, "sign3", tamper)
    sigs = {p.combine() for p in presigs}
    assert len(sigs) == 1
    return sigs.pop()


def sign_now(keys: Sequence[Dkls23Key], digest: bytes, rng: Rng = default_rng) -> Signature:
    """Presign and sign in one go."""
    return sign(presign(keys, rng), digest)


def resetup_pair(a: Dkls23Key, b: Dkls23Key, rng: Rng = default_rng,
                 tamper: Tamper | None = None) -> tuple[Dkls23Key, Dkls23Key]:
    """Re-run the base OTs of the pair (a, b) (a initiates); shares and other pairs unchanged."""
    nonce = rng(32)
    sid = resetup_session_id(a.key_id, a.public_key, a.party_id, b.party_id, nonce)
    sessions = {a.party_id: PairResetupSession(a, sid, b.party_id, rng),
                b.party_id: PairResetupSession(b, sid, a.party_id, rng)}
    for step in range(1, 6):
        out = [getattr(s, f"round{step}")() for s in sessions.values()]
        deliver(sessions, out, decode_resetup_message, f"resetup{step}", tamper)
    return sessions[a.party_id].finish(), sessions[b.party_id].finish()
