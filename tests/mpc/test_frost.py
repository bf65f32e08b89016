"""FROST end to end on keys from the DKG: every shape and signer subset, verified by independent
libraries; property tests over messages and subsets; tampering caught with the culprit named."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import secrets

import coincurve
import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.mpc_party.protocols.frost import (
    FROST_ED25519,
    FROST_SECP256K1,
    FROST_SECP256K1_BIP340,
    FrostSigner,
    SignState,
    decode_frost_message,
)
from appliance.mpc_party.protocols.frost.ciphersuite import tagged_hash
from appliance.mpc_party.protocols.frost.local import refresh, run_dkg, sign
from appliance.mpc_party.protocols.wire import LocalProtocolError, ProtocolAbort


def verify_ed25519(public: bytes, message: bytes, sig: bytes) -> None:
    Ed25519PublicKey.from_public_bytes(public).verify(sig, message)  # raises InvalidSignature
    nacl.signing.VerifyKey(public).verify(message, sig)  # raises BadSignatureError


def verify_bip340(shares, message: bytes, sig: bytes, merkle_root: bytes | None = None) -> None:
    """Compute the x-only (tweaked) output key independently with coincurve, then verify."""
    pub = coincurve.PublicKey(shares[0].group_public_key)
    xonly = coincurve.PublicKeyXOnly(pub.format()[1:])
    if merkle_root is not None:
        tweak = tagged_hash("TapTweak", xonly.format() + merkle_root)
        xonly.tweak_add(tweak)  # in place: the BIP-341 output key
    assert xonly.verify(sig, message), "coincurve rejected the BIP-340 signature"


@functools.cache
def keys(suite_name: str, n: int, t: int):
    group_suite = FROST_ED25519 if suite_name == "ed25519" else FROST_SECP256K1
    return run_dkg(n, t, group_suite)


SHAPES = [(2, 2), (3, 2), (5, 3), (9, 5)]


@pytest.mark.parametrize(("n", "t"), SHAPES)
def test_ed25519_every_shape(n, t):
    shares = keys("ed25519", n, t)
    subsets = itertools.combinations(shares, t) if n <= 5 else [shares[:t], shares[n - t:], shares]
    for subset in subsets:
        msg = secrets.token_bytes(40)
        verify_ed25519(shares[0].group_public_key, msg, sign(FROST_ED25519, list(subset), msg))


@pytest.mark.parametrize(("n", "t"), SHAPES)
def test_bip340_every_shape(n, t):
    shares = keys("secp256k1", n, t)
    subsets = itertools.combinations(shares, t) if n <= 5 else [shares[:t], shares[n - t:], shares]
    for subset in subsets:
        msg = secrets.token_bytes(32)
        verify_bip340(shares, msg, sign(FROST_SECP256K1_BIP340, list(subset), msg))


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3)])
def test_secp256k1_rfc_suite_every_subset(n, t):
    shares = keys("secp256k1", n, t)
    key = FROST_SECP256K1.signing_key(shares[0].group_public_key)
    for subset in itertools.combinations(shares, t):
        sig = sign(FROST_SECP256K1, list(subset), b"rfc suite")
        assert len(sig) == 65 and FROST_SECP256K1.verify(key, b"rfc suite", sig)


@pytest.mark.parametrize("root", [b"", bytes(range(32))], ids=["key-path", "script-tree"])
def test_bip340_taproot_tweak(root):
    for _ in range(4):  # both parities of the internal and output keys come up
        shares = run_dkg(3, 2, FROST_SECP256K1)
        msg = secrets.token_bytes(32)
        sig = sign(FROST_SECP256K1_BIP340, shares[1:], msg, taproot_merkle_root=root)
        verify_bip340(shares, msg, sig, root)


@settings(max_examples=15, deadline=None)
@given(message=st.binary(max_size=200), subset=st.sets(st.integers(1, 5), min_size=3, max_size=5))
def test_property_ed25519_messages_and_subsets(message, subset):
    shares = keys("ed25519", 5, 3)
    sig = sign(FROST_ED25519, [shares[i - 1] for i in sorted(subset)], message)
    verify_ed25519(shares[0].group_public_key, message, sig)


@settings(max_examples=15, deadline=None)
@given(message=st.binary(min_size=32, max_size=32), subset=st.sets(st.integers(1, 5), min_size=3, max_size=5))
def test_property_bip340_messages_and_subsets(message, subset):
    shares = keys("secp256k1", 5, 3)
    sig = sign(FROST_SECP256K1_BIP340, [shares[i - 1] for i in sorted(subset)], message)
    verify_bip340(shares, message, sig)


@pytest.mark.parametrize("suite", [FROST_ED25519, FROST_SECP256K1_BIP340], ids=["ed25519", "bip340"])
def test_refreshed_shares_sign_and_old_new_mix_fails(suite):
    old = run_dkg(3, 2, suite)
    new = refresh(old)
    msg = bytes(32)
    sig = sign(suite, [new[0], new[2]], msg)
    if suite is FROST_ED25519:
        verify_ed25519(old[0].group_public_key, msg, sig)
    else:
        verify_bip340(old, msg, sig)
    # a mix of old and new shares: the shares disagree with the (new) verification shares and the
    # combined secret is wrong, so honest aggregation refuses
    with pytest.raises(ProtocolAbort):
        sign(suite, [old[0], new[2]], msg)


# --- the state machine and tampering -------------------------------------------------------------


class Session:
    def __init__(self, suite=FROST_ED25519, ids=(1, 2, 3), message=b"pay 1 BTC"):
        self.suite = suite
        self.shares = keys("ed25519" if suite is FROST_ED25519 else "secp256k1", 3, 2)
        self.sid = secrets.token_bytes(32)
        self.signers = {i: FrostSigner(suite, self.shares[i - 1], self.sid, list(ids), message) for i in ids}

    def deliver(self, msg, to=None):
        for j in [to] if to else [j for j in self.signers if j != msg.sender]:
            self.signers[j].receive(decode_frost_message(self.suite.group, msg.to_bytes(), msg.sender))

    def commit_all(self):
        msgs = {i: s.commit() for i, s in self.signers.items()}
        for m in msgs.values():
            self.deliver(m)
        return msgs


def abort(fn, culprit):
    with pytest.raises(ProtocolAbort) as info:
        fn()
    assert info.value.culprit == culprit, info.value
    return info.value


def test_states_and_nonce_single_use():
    s = Session()
    p = s.signers[1]
    assert p.state is SignState.COMMIT
    with pytest.raises(LocalProtocolError):
        p.sign()
    s.commit_all()
    with pytest.raises(LocalProtocolError):
        p.commit()  # round replay
    shares = {i: x.sign() for i, x in s.signers.items()}
    with pytest.raises(LocalProtocolError):
        p.sign()  # the nonce set cannot sign twice
    assert p._nonces is None
    for m in shares.values():
        s.deliver(m)
    sig = p.aggregate()
    verify_ed25519(s.shares[0].group_public_key, b"pay 1 BTC", sig)
    assert p.state is SignState.DONE
    with pytest.raises(LocalProtocolError):
        p.aggregate()


def test_signer_set_checks():
    shares = keys("ed25519", 3, 2)
    sid = bytes(32)
    for ids in ([1], [2, 3], [1, 1, 2], [1, 4]):
        with pytest.raises(LocalProtocolError):
            FrostSigner(FROST_ED25519, shares[0], sid, ids, b"m")
    with pytest.raises(LocalProtocolError):
        FrostSigner(FROST_SECP256K1, shares[0], sid, [1, 2], b"m")  # wrong group
    with pytest.raises(LocalProtocolError):
        FrostSigner(FROST_ED25519, shares[0], sid, [1, 2], b"m", taproot_merkle_root=b"")  # no Taproot here


@pytest.mark.parametrize("suite", [FROST_ED25519, FROST_SECP256K1, FROST_SECP256K1_BIP340],
                         ids=["ed25519", "secp256k1", "bip340"])
def test_bad_signature_share_names_signer(suite):
    s = Session(suite)
    s.commit_all()
    shares = {i: x.sign() for i, x in s.signers.items()}
    bad = dataclasses.replace(shares[3], share=(shares[3].share + 1) % suite.group.order)
    for m in (shares[1], shares[2]):
        s.deliver(m)
    s.deliver(bad)
    abort(s.signers[1].aggregate, 3)
    assert s.signers[1].state is SignState.FAILED


def test_equivocated_commitment_named():
    s = Session()
    msgs = {i: x.commit() for i, x in s.signers.items()}
    twin = FrostSigner(FROST_ED25519, s.shares[2], s.sid, [1, 2, 3], b"pay 1 BTC").commit()
    s.deliver(msgs[1])
    s.deliver(msgs[2])
    s.deliver(msgs[3], to=1)
    s.deliver(twin, to=2)
    shares = {i: s.signers[i].sign() for i in (1, 2)}
    s.deliver(shares[2], to=1)
    s.deliver(dataclasses.replace(shares[1], sender=3), to=1)
    err = abort(s.signers[1].aggregate, 2)
    assert "different" in err.reason


def test_different_message_named():
    s = Session()
    s.signers[2] = FrostSigner(FROST_ED25519, s.shares[1], s.sid, [1, 2, 3], b"pay 100 BTC")
    s.commit_all()
    shares = {i: x.sign() for i, x in s.signers.items()}
    for m in shares.values():
        s.deliver(m)
    abort(s.signers[1].aggregate, 2)


def test_duplicate_foreign_and_wrong_session_messages():
    s = Session(ids=(1, 2))
    c = {i: x.commit() for i, x in s.signers.items()}
    s.deliver(c[2], to=1)
    abort(lambda: s.deliver(c[2], to=1), 2)  # replay
    abort(lambda: s.signers[2].receive(dataclasses.replace(c[1], session_id=bytes(32))), 1)
    abort(lambda: s.signers[2].receive(dataclasses.replace(c[1], sender=3)), 3)  # not a signer here
    abort(lambda: s.signers[2].receive(c[2]), 2)  # our own message reflected
    s.deliver(c[1], to=2)  # the honest message still goes in afterwards
    z = s.signers[1].sign()
    s.deliver(z, to=2)
    abort(lambda: s.deliver(z, to=2), 1)


@pytest.mark.parametrize("suite", [FROST_ED25519, FROST_SECP256K1], ids=["ed25519", "secp256k1"])
def test_malformed_messages_name_sender(suite):
    g = suite.group
    s = Session(suite)
    data = s.signers[2].commit().to_bytes()
    header = 1 + 1 + 32 + 2 + 2
    rest = data[header + g.point_len:]
    cases = [data[:-1], data + b"\x00", b"\x02" + data[1:],
             data[:header] + g.identity + rest,  # the identity as a nonce commitment
             data[:header] + b"\xff" * g.point_len + rest]  # not a point
    for bad in cases:
        with pytest.raises(ProtocolAbort) as info:
            decode_frost_message(g, bad, 2)
        assert info.value.culprit == 2
    abort(lambda: decode_frost_message(g, data, 3), 3)  # claims another sender


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_fuzzed_signing_messages_only_abort(data):
    s = Session(FROST_SECP256K1_BIP340, ids=(1, 2))
    c = {i: x.commit() for i, x in s.signers.items()}
    s.deliver(c[1], to=2)
    msg = data.draw(st.sampled_from([c[2], None]))
    if msg is None:
        s.deliver(c[2], to=1)
        msg = s.signers[2].sign()
        s.signers[1].sign()
    raw = bytearray(msg.to_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        s.signers[1].receive(decode_frost_message(s.suite.group, bytes(raw), 2))
        if s.signers[1].state is SignState.WAITING_SHARES:
            s.signers[1].aggregate()
    except ProtocolAbort as exc:
        assert exc.culprit == 2


def test_demo_step():
    from appliance.local.demo_frost import demo_step

    lines = demo_step()
    assert any("PyNaCl" in line for line in lines) and any("coincurve" in line for line in lines)


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_property_fresh_dkg_any_shape_and_subset(data):
    """A fresh DKG of a random shape, then a random qualifying subset signs, for both curves."""
    n = data.draw(st.integers(1, 6), label="n")
    t = data.draw(st.integers(1, n), label="t")
    ids = sorted(data.draw(st.sets(st.integers(1, n), min_size=t, max_size=n), label="signers"))
    message = data.draw(st.binary(min_size=32, max_size=32), label="message")
    ed = run_dkg(n, t, FROST_ED25519)
    verify_ed25519(ed[0].group_public_key, message, sign(FROST_ED25519, [ed[i - 1] for i in ids], message))
    k1 = run_dkg(n, t, FROST_SECP256K1)
    verify_bip340(k1, message, sign(FROST_SECP256K1_BIP340, [k1[i - 1] for i in ids], message))
