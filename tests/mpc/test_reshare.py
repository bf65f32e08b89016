"""Resharing (protocols/reshare.py, dkls23/reshare.py): t old holders give a key to a new set with a
new threshold. Same public key, signatures of new quorums verified independently (PyNaCl +
cryptography for Ed25519, coincurve for BIP-340, cryptography + coincurve for ECDSA), old shares
useless with the new ones, and every kind of bad dealing caught and blamed on its dealer."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import secrets

import pytest

from appliance.local.demo_dkls23 import verify_independently
from appliance.mpc_party.protocols.dkg import KeyShare
from appliance.mpc_party.protocols.dkls23 import local as dkls_local
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.frost import FROST_ED25519, FROST_SECP256K1, FROST_SECP256K1_BIP340
from appliance.mpc_party.protocols.frost.local import run_dkg, sign
from appliance.mpc_party.protocols.group import ED25519, SECP256K1, lagrange_at_zero
from appliance.mpc_party.protocols.reshare import (
    ReshareDeal,
    ReshareEcho,
    ReshareParty,
    ReshareSpec,
    ReshareSubShare,
    decode_reshare_message,
    run_local_reshare,
)
from appliance.mpc_party.protocols.reshare_sessions import reshare_session
from appliance.mpc_party.protocols.sessions import run_in_process
from appliance.mpc_party.protocols.sharecodec import decode_keyshare, encode_keyshare
from appliance.mpc_party.protocols.wire import LocalProtocolError, ProtocolAbort
from tests.mpc.test_frost import verify_bip340, verify_ed25519


def spec_for(group, public_key: bytes, dealers, new_parties, new_t: int) -> ReshareSpec:
    return ReshareSpec(group, secrets.token_bytes(32), public_key, tuple(dealers), tuple(new_parties), new_t)


def reshare_frost(old: dict[int, KeyShare], dealers, new_parties, new_t) -> dict[int, KeyShare]:
    """Run the resharing through the daemon's Session face (bytes on every hop)."""
    any_old = next(iter(old.values()))
    spec = spec_for(any_old.group, any_old.group_public_key, dealers, new_parties, new_t)
    key_type = "KEY_TYPE_EDDSA_ED25519" if any_old.group is ED25519 else None
    if key_type is None:  # secp256k1 FROST keys: drive the core directly (no zrChain key type yet)
        outcomes = run_local_reshare(spec, old)
        return {p: o.share for p, o in outcomes.items() if o.share is not None}
    sessions = [reshare_session(key_type, spec, p, old.get(p), secrets.token_bytes) for p in spec.participants]
    results = run_in_process(sessions)
    return {s.me: r for s, r in zip(sessions, results, strict=True) if r is not None}


def reshare_dkls(old: dict[int, Dkls23Key], dealers, new_parties, new_t) -> dict[int, Dkls23Key]:
    any_old = next(iter(old.values()))
    spec = spec_for(SECP256K1, any_old.public_key, dealers, new_parties, new_t)
    sessions = [reshare_session("KEY_TYPE_ECDSA_SECP256K1", spec, p, old.get(p), secrets.token_bytes)
                for p in spec.participants]
    results = run_in_process(sessions)
    return {s.me: r for s, r in zip(sessions, results, strict=True) if r is not None}


@functools.cache
def frost_keys(group_name: str) -> tuple[KeyShare, ...]:
    return tuple(run_dkg(3, 2, FROST_ED25519 if group_name == "ed25519" else FROST_SECP256K1))


def frost_verify(group_name: str, shares, msg: bytes, sig_shares) -> None:
    if group_name == "ed25519":
        verify_ed25519(shares[0].group_public_key, msg, sign(FROST_ED25519, sig_shares, msg))
    else:
        verify_bip340(list(shares), msg, sign(FROST_SECP256K1_BIP340, sig_shares, msg))


# --- FROST keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("group_name", ["ed25519", "secp256k1"])
def test_frost_2of3_to_3of4_then_remove_party_1(group_name):
    old = {s.party_id: s for s in frost_keys(group_name)}
    key = old[1].group_public_key
    grown = reshare_frost({1: old[1], 3: old[3]}, (1, 3), (1, 2, 3, 4), 3)  # party 2 not a dealer
    assert sorted(grown) == [1, 2, 3, 4]
    assert all(s.group_public_key == key and s.t == 3 and s.n == 4 for s in grown.values())
    assert all(s.session_id == old[1].session_id for s in grown.values())  # the key id stays
    for quorum in itertools.combinations(sorted(grown), 3):
        msg = secrets.token_bytes(32)
        frost_verify(group_name, list(old.values()), msg, [grown[i] for i in quorum])
    with pytest.raises(LocalProtocolError):  # two of the new 3-of-4 are not enough
        sign(FROST_ED25519 if group_name == "ed25519" else FROST_SECP256K1_BIP340, [grown[1], grown[2]], b"m")

    shrunk = reshare_frost({i: grown[i] for i in (2, 3, 4)}, (2, 3, 4), (2, 3, 4), 2)
    assert sorted(shrunk) == [2, 3, 4]
    for quorum in itertools.combinations(sorted(shrunk), 2):
        msg = secrets.token_bytes(32)
        frost_verify(group_name, list(old.values()), msg, [shrunk[i] for i in quorum])
    for s in shrunk.values():  # ids 2..4: the share codec writes them (version 2) and reads them back
        again = decode_keyshare(encode_keyshare(s))
        assert again.verification_shares == s.verification_shares and again.secret == s.secret


def test_old_shares_do_not_combine_with_new_ones():
    old = {s.party_id: s for s in frost_keys("ed25519")}
    g, q = ED25519, ED25519.order
    new = reshare_frost(old, (1, 2), (1, 2, 3), 2)  # a refresh: same set, same threshold
    key = old[1].group_public_key
    assert all(new[i].secret != old[i].secret for i in new)
    # interpolating new shares gives the key; an old share with a new one does not
    both = [new[1], new[3]]
    assert g.base_mul(sum(lagrange_at_zero(s.party_id, [1, 3], q) * s.secret for s in both) % q) == key
    mixed = [old[1], new[3]]
    assert g.base_mul(sum(lagrange_at_zero(s.party_id, [1, 3], q) * s.secret for s in mixed) % q) != key
    # and signing with the mix fails: the old share is not on the new polynomial
    with pytest.raises(ProtocolAbort):
        sign(FROST_ED25519, [old[1], new[3]], b"mixed")
    # the removed party's old share is of no use either: it does not even fit the new set
    shrunk = reshare_frost(new, (1, 2), (2, 3), 2)
    stale = dataclasses.replace(old[1], verification_shares={1: old[1].verification_shares[1],
                                                             **shrunk[3].verification_shares})
    with pytest.raises((ProtocolAbort, LocalProtocolError)):
        sign(FROST_ED25519, [stale, shrunk[3]], b"removed party")


# --- DKLs23 keys ------------------------------------------------------------------------------------


def ecdsa_signs(keys: list[Dkls23Key]) -> None:
    digest = hashlib.sha256(secrets.token_bytes(16)).digest()
    sig = dkls_local.sign_now(keys, digest)
    verify_independently(keys[0].public_key, digest, sig)


def test_dkls23_2of3_to_3of4_then_remove_party_1():
    old = {k.party_id: k for k in dkls_local.run_dkg(3, 2)}
    grown = reshare_dkls({2: old[2], 3: old[3]}, (2, 3), (1, 2, 3, 4), 3)
    assert sorted(grown) == [1, 2, 3, 4]
    for k in grown.values():
        assert k.public_key == old[1].public_key and k.key_id == old[1].key_id and k.epoch == 1
        assert (k.n, k.t) == (4, 3) and sorted(k.pairs) == sorted(set(grown) - {k.party_id})
        assert all(k.pairs[j].delta != old[k.party_id].pairs[j].delta
                   for j in k.pairs if k.party_id in old and j in old[k.party_id].pairs)
    for quorum in itertools.combinations(sorted(grown), 3):
        ecdsa_signs([grown[i] for i in quorum])

    shrunk = reshare_dkls({i: grown[i] for i in (2, 3, 4)}, (2, 3, 4), (2, 3, 4), 2)
    assert sorted(shrunk) == [2, 3, 4] and all(k.epoch == 2 for k in shrunk.values())
    for quorum in itertools.combinations(sorted(shrunk), 2):
        ecdsa_signs([shrunk[i] for i in quorum])
    for k in shrunk.values():  # ids 2..4: sealed layout version 2, read back and validated
        assert Dkls23Key.from_bytes(k.to_bytes()).public_shares == k.public_shares


def test_dkls23_removed_party_old_key_cannot_sign_with_new_ones():
    old = {k.party_id: k for k in dkls_local.run_dkg(3, 2)}
    new = reshare_dkls(old, (1, 2), (2, 3), 2)  # party 1 deals, then leaves
    assert sorted(new) == [2, 3]
    ecdsa_signs([new[2], new[3]])
    with pytest.raises((ProtocolAbort, LocalProtocolError)):  # old party 1 with new party 3
        dkls_local.sign_now([old[1], new[3]], bytes(32))
    with pytest.raises((ProtocolAbort, LocalProtocolError)):  # old 2 (pre-resharing) with new 3
        dkls_local.sign_now([old[2], new[3]], bytes(32))


def test_dkls23_refresh_same_set_is_a_resharing():
    old = {k.party_id: k for k in dkls_local.run_dkg(3, 2)}
    new = reshare_dkls({1: old[1], 3: old[3]}, (1, 3), (1, 2, 3), 2)
    assert all(new[i].secret != old[i].secret and new[i].epoch == 1 for i in new)
    ecdsa_signs([new[1], new[2]])


# --- bad dealings -------------------------------------------------------------------------------------


def run_tampered(spec: ReshareSpec, old: dict[int, KeyShare], tamper) -> dict[int, ProtocolAbort | object]:
    """Run with `tamper(msg, recipient) -> msg` on every message; each party's outcome or abort."""
    parts = {p: ReshareParty(spec, p, old.get(p), secrets.token_bytes) for p in spec.participants}
    outcome: dict[int, ProtocolAbort | object] = {}

    def deliver(msgs):
        for m in msgs:
            targets = [p for p in parts if p != m.sender] if m.BROADCAST else [m.recipient]
            for p in targets:
                if p in outcome:
                    continue
                wire = tamper(m, p).to_bytes()
                try:
                    parts[p].receive(decode_reshare_message(spec.group, wire, m.sender))
                except ProtocolAbort as exc:
                    outcome[p] = exc

    deliver([m for part in parts.values() for m in part.round1()])
    echoes = []
    for p, part in parts.items():
        if p not in outcome:
            try:
                echoes.append(part.round2())
            except ProtocolAbort as exc:
                outcome[p] = exc
    deliver(echoes)
    for p, part in parts.items():
        if p not in outcome and part.ready_to_finish():
            try:
                outcome[p] = part.finish()
            except ProtocolAbort as exc:
                outcome[p] = exc
    return outcome


def bad_spec(old):
    return spec_for(ED25519, old[1].group_public_key, (1, 2), (1, 2, 3, 4), 3)


def test_constant_term_not_lambda_times_old_share_is_named():
    old = {s.party_id: s for s in frost_keys("ed25519")}
    g = ED25519

    def shift(m, _to):  # dealer 2 adds 1 to its constant term (commitment and sub-shares agree)
        if isinstance(m, ReshareDeal) and m.sender == 2:
            return dataclasses.replace(m, commitments=(g.add(m.commitments[0], g.base_mul(1)), *m.commitments[1:]))
        if isinstance(m, ReshareSubShare) and m.sender == 2:
            return dataclasses.replace(m, value=(m.value + 1) % g.order)
        return m

    outcome = run_tampered(bad_spec(old), old, shift)
    for p in (1, 3, 4):  # holders of the old share and the joining party 4 alike
        assert isinstance(outcome[p], ProtocolAbort) and outcome[p].culprit == 2, outcome[p]
        assert "lambda" in str(outcome[p])


def test_bad_sub_share_is_named_by_its_recipient():
    old = {s.party_id: s for s in frost_keys("ed25519")}

    def corrupt(m, to):
        if isinstance(m, ReshareSubShare) and m.sender == 1 and to == 4:
            return dataclasses.replace(m, value=(m.value + 7) % ED25519.order)
        return m

    outcome = run_tampered(bad_spec(old), old, corrupt)
    assert isinstance(outcome[4], ProtocolAbort) and outcome[4].culprit == 1
    assert "sub-share" in str(outcome[4])
    # the others finished round 2 but party 4 never echoed: nobody has a share to commit
    assert not any(getattr(o, "share", None) for o in outcome.values())


def test_equivocating_dealer_caught_by_the_echo():
    old = {s.party_id: s for s in frost_keys("ed25519")}
    g = ED25519
    r = g.random_scalar()
    shown_to_4: dict[str, object] = {}

    def equivocate(m, to):  # dealer 1 shows party 4 another (self-consistent) higher coefficient
        if isinstance(m, ReshareDeal) and m.sender == 1 and to == 4:
            shown_to_4["deal"] = dataclasses.replace(
                m, commitments=(m.commitments[0], g.add(m.commitments[1], g.base_mul(r)), *m.commitments[2:]))
            return shown_to_4["deal"]
        if isinstance(m, ReshareSubShare) and m.sender == 1 and to == 4:
            return dataclasses.replace(m, value=(m.value + r * 4) % g.order)
        return m

    outcome = run_tampered(bad_spec(old), old, equivocate)
    assert all(isinstance(o, ProtocolAbort) and "echo mismatch" in str(o) for o in outcome.values()), outcome


def test_forged_old_verification_shares_are_named():
    old = {s.party_id: s for s in frost_keys("ed25519")}
    g = ED25519

    def forge(m, _to):  # dealer 2 claims another verification share for itself, consistent deal
        if isinstance(m, ReshareDeal) and m.sender == 2:
            vs = list(m.old_vshares)
            vs[1] = g.add(vs[1], g.base_mul(1))
            return dataclasses.replace(m, old_vshares=tuple(vs))
        return m

    outcome = run_tampered(bad_spec(old), old, forge)
    assert outcome[1].culprit == 2 and outcome[3].culprit == 2  # holders compare with their own
    assert outcome[4].culprit == 2  # the joiner: the forged set no longer interpolates to the key


def test_messages_from_outsiders_and_wrong_roles_refused():
    old = {s.party_id: s for s in frost_keys("ed25519")}
    spec = spec_for(ED25519, old[1].group_public_key, (1, 2), (1, 2, 3), 2)
    p3 = ReshareParty(spec, 3, old[3])
    p3.round1()
    echo = ReshareEcho(ED25519, spec.session_id, 5, bytes(32))
    with pytest.raises(ProtocolAbort) as exc:
        p3.receive(echo)
    assert exc.value.culprit == 5
    p1 = ReshareParty(spec, 1, old[1])
    deal = next(m for m in p1.round1() if isinstance(m, ReshareDeal))
    fake = dataclasses.replace(deal, sender=3)  # party 3 is not a dealer
    with pytest.raises(ProtocolAbort) as exc:
        ReshareParty(spec, 2, old[2]).receive(fake)
    assert exc.value.culprit == 3
    with pytest.raises(LocalProtocolError):  # a dealer without its share
        ReshareParty(spec, 1, None)
    with pytest.raises(LocalProtocolError):  # dealers must be exactly t old holders
        ReshareParty(spec_for(ED25519, old[1].group_public_key, (1, 2, 3), (1, 2, 3), 2), 1, old[1])


def test_real_resharing_sessions_fit_the_gate_limits():
    """Every message of a real resharing (and a version sync) is within limits.round_table."""
    from appliance.mpc_party import limits
    from tests.transport.test_limits import run_recording

    old = {k.party_id: k for k in dkls_local.run_dkg(3, 2)}
    spec = spec_for(SECP256K1, old[1].public_key, (1, 2), (1, 2, 3, 4), 3)
    _, seen = run_recording([reshare_session("KEY_TYPE_ECDSA_SECP256K1", spec, p, old.get(p), secrets.token_bytes)
                             for p in spec.participants])
    frost = {s.party_id: s for s in frost_keys("ed25519")}
    spec = spec_for(ED25519, frost[1].group_public_key, (2, 3), (1, 2, 3, 4), 3)
    _, more = run_recording([reshare_session("KEY_TYPE_EDDSA_ED25519", spec, p, frost.get(p), secrets.token_bytes)
                             for p in spec.participants])
    table = limits.round_table(4)
    for protocol, round_, _sender, _recipient, size in seen + more:
        assert size <= table[protocol].max_payload(round_), (protocol, round_, size)
