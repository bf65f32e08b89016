"""DKLs23 under attack: one test per check of the protocol. Each cheat must abort the session with
ProtocolAbort, naming the cheater where the protocol can tell; an honest party never raises anything
else and never returns a signature that does not verify."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Callable

import pytest

from appliance.mpc_party.protocols.dkls23 import local, mul
from appliance.mpc_party.protocols.dkls23.common import GROUP, KIND_OT2, Q
from appliance.mpc_party.protocols.dkls23.keygen import decode_keygen_message
from appliance.mpc_party.protocols.dkls23.sign import SignSession, decode_sign_message
from appliance.mpc_party.protocols.wire import ProtocolAbort
from tests.mpc.test_dkls23_sign import check_signature

DIGEST = hashlib.sha256(b"tamper").digest()


@pytest.fixture(scope="module")
def keys():
    return local.run_dkg(3, 2)


def edit(round_name: str, sender: int, recipient: int, change: Callable, decode=decode_sign_message):
    """A tamper hook that rewrites one message (decoded, changed, re-encoded) in flight."""
    def hook(name: str, frm: int, to: int, data: bytes) -> bytes:
        if (name, frm, to) != (round_name, sender, recipient):
            return data
        msg = decode(data, frm)
        if not change(msg):
            return data
        return change(msg).to_bytes()
    return hook


def flip(round_name: str, sender: int, recipient: int, offset: int, kind: int | None = None) -> Callable:
    """Flip one bit of every message (of message `kind`, if given) from sender to recipient."""
    def hook(name: str, frm: int, to: int, data: bytes) -> bytes:
        if (name, frm, to) != (round_name, sender, recipient) or (kind is not None and data[1] != kind):
            return data
        i = offset % len(data)
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
    return hook


def _bump(v: int) -> int:
    return (v + 1) % Q


def _flip_bytes(b: bytes, i: int = 0) -> bytes:
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1 :]


def _items(msg, i, value):
    items = list(msg.items)
    items[i] = value
    return dataclasses.replace(msg, items=tuple(items))


# --- keygen: the DKG's checks and the base OT's checks -------------------------------------------

KEYGEN_CASES = {
    "dkg proof of knowledge": (edit("round1", 2, 1, lambda m: getattr(m, "proof_z", None) is not None
                                    and dataclasses.replace(m, proof_z=_bump(m.proof_z)),
                                    decode_keygen_message), 2),
    "dkg share vs commitments": (edit("round2", 2, 1, lambda m: hasattr(m, "value")
                                      and dataclasses.replace(m, value=_bump(m.value)),
                                      decode_keygen_message), 2),
    "base OT sender proof": (edit("round1", 3, 1, lambda m: hasattr(m, "items")
                                  and dataclasses.replace(m, z=_bump(m.z)), decode_keygen_message), 3),
    # inside one A_l: off-curve or wrong (the OT message only: a flipped echo names nobody, test_dkg.py)
    "base OT receiver point": (flip("round2", 1, 2, -33 * 60, KIND_OT2), 1),
    "base OT verification response": (edit("round4", 2, 3, lambda m: _items(m, 9, _flip_bytes(m.items[9])),
                                           decode_keygen_message), 2),
    "base OT opening": (edit("round5", 3, 1, lambda m: _items(m, 20, _flip_bytes(m.items[20])),
                             decode_keygen_message), 3),
    "keygen wrong session id": (edit("round3", 1, 2, lambda m: dataclasses.replace(m, session_id=bytes(32)),
                                     decode_keygen_message), 1),
}


@pytest.mark.parametrize("case", list(KEYGEN_CASES))
def test_keygen_check_names_the_cheater(case):
    hook, culprit = KEYGEN_CASES[case]
    with pytest.raises(ProtocolAbort) as exc:
        local.run_dkg(3, 2, tamper=hook)
    assert exc.value.culprit == culprit, exc.value


# --- signing: OT extension, multiplication, Gamma, decommitment, session, round 3 ----------------

def _alice(m, **kw):
    return dataclasses.replace(m, alice=dataclasses.replace(m.alice, **kw))


SIGN_CASES = {
    "OT extension consistency (U)": (edit("sign1", 2, 1, lambda m: dataclasses.replace(
        m, bob=mul.BobMessage(_flip_bytes(m.bob.u, 500), m.bob.check))), 2),
    "OT extension consistency (check values)": (edit("sign1", 3, 2, lambda m: dataclasses.replace(
        m, bob=mul.BobMessage(m.bob.u, _flip_bytes(m.bob.check, 3)))), 3),
    "multiplication consistency (tau)": (edit("sign2", 3, 1, lambda m: _alice(
        m, tau=_flip_bytes(m.alice.tau, 999))), 3),
    "multiplication consistency (r)": (edit("sign2", 1, 2, lambda m: _alice(
        m, r=_flip_bytes(m.alice.r, 64))), 1),
    "multiplication consistency (u)": (edit("sign2", 2, 3, lambda m: _alice(m, u=_bump(m.alice.u))), 2),
    "Gamma^u (instance key input)": (edit("sign2", 2, 1, lambda m: dataclasses.replace(
        m, gamma_u=GROUP.generator)), 2),
    "Gamma^v (key share input)": (edit("sign2", 1, 3, lambda m: dataclasses.replace(
        m, gamma_v=GROUP.generator)), 1),
    "decommitment (salt)": (edit("sign2", 3, 2, lambda m: dataclasses.replace(
        m, salt=_flip_bytes(m.salt))), 3),
    "decommitment (R)": (edit("sign2", 1, 2, lambda m: dataclasses.replace(
        m, big_r=GROUP.add(m.big_r, GROUP.generator))), 1),
    "round-1 commitments echo": (edit("sign2", 2, 1, lambda m: dataclasses.replace(
        m, view=_flip_bytes(m.view))), 2),
    "wrong session id": (edit("sign1", 2, 3, lambda m: dataclasses.replace(m, session_id=bytes(32))), 2),
    "claims another sender": (edit("sign2", 2, 3, lambda m: dataclasses.replace(m, sender=1)), 2),
    "round-3 digest differs": (edit("sign3", 2, 1, lambda m: dataclasses.replace(m, digest=bytes(32))), 2),
}


@pytest.mark.parametrize("case", list(SIGN_CASES))
def test_signing_check_names_the_cheater(keys, case):
    hook, culprit = SIGN_CASES[case]
    with pytest.raises(ProtocolAbort) as exc:
        local.sign(local.presign(keys, tamper=hook), DIGEST, tamper=hook)
    assert exc.value.culprit == culprit, exc.value


@pytest.mark.parametrize("field", ["u", "w"])
def test_bad_round3_share_never_yields_a_signature(keys, field):
    presigs = local.presign(keys)
    hook = edit("sign3", 3, 1, lambda m: dataclasses.replace(m, **{field: _bump(getattr(m, field))}))
    with pytest.raises(ProtocolAbort, match="does not verify"):
        local.sign(presigs, DIGEST, tamper=hook)


# --- replay, reorder, duplicates, misaddressing --------------------------------------------------

def _sessions(keys, sid=None):
    """Signing sessions of parties 1-3 past round 0 (nonces exchanged), ready for round 1."""
    sid = sid or secrets.token_bytes(32)
    sessions = {k.party_id: SignSession(k, sid, [1, 2, 3]) for k in keys}
    nonces = [s.round0() for s in sessions.values()]
    for j, s in sessions.items():
        for m in nonces:
            if m.sender != j:
                s.receive(_wire(m))
    return sessions


def _wire(msg):
    return decode_sign_message(msg.to_bytes(), msg.sender)


def test_duplicate_round1_message_names_sender(keys):
    s = _sessions(keys)
    m = next(m for m in s[2].round1() if m.recipient == 1)
    s[1].round1()
    s[1].receive(_wire(m))
    with pytest.raises(ProtocolAbort, match="duplicate") as exc:
        s[1].receive(_wire(m))
    assert exc.value.culprit == 2


def test_reordered_round2_before_round1_names_sender(keys):
    s = _sessions(keys)
    r1 = {j: s[j].round1() for j in s}
    for j in (2, 3):
        for m in r1[1] + r1[3 if j == 2 else 2]:
            if m.recipient == j:
                s[j].receive(_wire(m))
    early = next(m for m in s[2].round2() if m.recipient == 1)
    with pytest.raises(ProtocolAbort, match="before") as exc:
        s[1].receive(_wire(early))
    assert exc.value.culprit == 2


def test_messages_from_peers_ahead_of_us_are_buffered(keys):
    s = _sessions(keys)
    for j in (2, 3):  # party 1 has not started yet
        s[1].receive(_wire(next(m for m in s[j].round1() if m.recipient == 1)))
    s[1].round1()
    assert s[1].missing()["round1"] == []


def test_round3_shares_from_peers_ahead_of_us_are_kept(keys):
    s = _sessions(keys)
    r1 = {j: s[j].round1() for j in s}
    for j in s:
        for m in (m for i in s if i != j for m in r1[i] if m.recipient == j):
            s[j].receive(_wire(m))
    r2 = {j: s[j].round2() for j in s}
    for j in (2, 3):  # parties 2 and 3 get everything; party 1 is still missing 3's round-2 message
        for m in (m for i in s if i != j for m in r2[i] if m.recipient == j):
            s[j].receive(_wire(m))
    s[1].receive(_wire(next(m for m in r2[2] if m.recipient == 1)))
    presigs = {j: s[j].finish() for j in (2, 3)}
    r3 = {j: presigs[j].round3(DIGEST) for j in (2, 3)}
    presigs[3].receive(_wire(r3[2]))
    presigs[2].receive(_wire(r3[3]))
    with pytest.raises(ProtocolAbort, match="round-2") as exc:
        s[1].receive(_wire(r3[3]))  # 3's round-3 share before its round-2 message: reordered
    assert exc.value.culprit == 3
    s[1].receive(_wire(r3[2]))  # 2 is legitimately ahead of us
    s[1].receive(_wire(next(m for m in r2[3] if m.recipient == 1)))
    p1 = s[1].finish()
    p1.receive(_wire(r3[3]))  # before our own round 3: kept
    assert p1.waiting_for() == []
    own = p1.round3(DIGEST)
    sig = p1.combine()
    for j in (2, 3):
        presigs[j].receive(_wire(own))
        assert presigs[j].combine() == sig
    check_signature(keys[0].public_key, DIGEST, sig)


def test_early_round3_share_for_another_digest_is_caught(keys):
    presigs = local.presign(keys)
    share = presigs[1].round3(bytes(32))
    presigs[0].receive(_wire(share))
    with pytest.raises(ProtocolAbort, match="different digest") as exc:
        presigs[0].round3(DIGEST)
    assert exc.value.culprit == 2


def test_message_replayed_from_another_session_names_sender(keys):
    old = _sessions(keys)
    replay = next(m for m in old[3].round1() if m.recipient == 1)
    new = _sessions(keys)
    new[1].round1()
    with pytest.raises(ProtocolAbort, match="session") as exc:
        new[1].receive(_wire(replay))
    assert exc.value.culprit == 3


def test_misaddressed_p2p_message_names_sender(keys):
    s = _sessions(keys)
    s[1].round1()
    for_3 = next(m for m in s[2].round1() if m.recipient == 3)
    with pytest.raises(ProtocolAbort, match="addressed") as exc:
        s[1].receive(_wire(for_3))
    assert exc.value.culprit == 2


def test_old_round_message_in_round3_names_sender(keys):
    presigs = local.presign(keys)
    presigs[0].round3(DIGEST)
    stale = next(m for m in _sessions(keys)[2].round1() if m.recipient == 1)
    with pytest.raises(ProtocolAbort) as exc:
        presigs[0].receive(_wire(stale))
    assert exc.value.culprit == 2


# --- random corruption anywhere: only ProtocolAbort, never a bad signature -----------------------

def test_random_corruption_in_signing_only_aborts(keys):
    routes = [("sign1", 1, 2), ("sign1", 3, 1), ("sign2", 2, 1), ("sign2", 3, 2), ("sign3", 1, 3),
              ("sign3", 2, 3)]
    for _ in range(24):
        route = routes[secrets.randbelow(len(routes))]
        hook = flip(*route, offset=secrets.randbelow(1 << 20))
        try:
            sig = local.sign(local.presign(keys, tamper=hook), DIGEST, tamper=hook)
        except ProtocolAbort:
            continue
        check_signature(keys[0].public_key, DIGEST, sig)  # if nothing noticed, it must still be right


def test_random_corruption_in_keygen_only_aborts():
    routes = [(f"round{r}", s, t) for r in range(1, 6) for s, t in ((1, 2), (2, 1))]
    for _ in range(10):
        hook = flip(*routes[secrets.randbelow(len(routes))], offset=secrets.randbelow(1 << 20))
        with pytest.raises(ProtocolAbort):
            local.run_dkg(2, 2, tamper=hook)
