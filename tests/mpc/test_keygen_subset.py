"""Keygen with parties down: the DKG and DKLs23 keygen among a participant set P (|P| >= t), the
threshold unchanged, every index's verification share defined; signatures checked independently."""

from __future__ import annotations

import hashlib
import secrets

import nacl.signing
import pytest

from appliance.local.demo_dkls23 import verify_independently
from appliance.mpc_party.protocols.dkg import DkgParty, run_local_dkg
from appliance.mpc_party.protocols.dkls23 import local
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.dkls23.sign import SignSession
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.group import ED25519, SECP256K1, lagrange_at_zero
from appliance.mpc_party.protocols.sessions import FrostSignSession, run_in_process
from appliance.mpc_party.protocols.wire import LocalProtocolError


def interpolate(shares, ids):
    g = shares[0].group
    by_id = {s.party_id: s for s in shares}
    return sum(lagrange_at_zero(i, ids, g.order) * by_id[i].secret for i in ids) % g.order


@pytest.mark.parametrize("group", [ED25519, SECP256K1], ids=lambda g: g.name)
@pytest.mark.parametrize(("n", "t", "participants"), [(3, 2, (1, 3)), (5, 3, (2, 4, 5)), (5, 3, (1, 2, 3, 5))])
def test_subset_dkg_keeps_threshold_and_defines_every_index(group, n, t, participants):
    shares = run_local_dkg(group, n, t, participants=participants)
    assert [s.party_id for s in shares] == list(participants)
    key = shares[0].group_public_key
    for s in shares:
        assert s.group_public_key == key and (s.n, s.t) == (n, t)
        assert sorted(s.verification_shares) == list(range(1, n + 1))  # absent indices too
        assert group.base_mul(s.secret) == s.verification_shares[s.party_id]
    quorum = list(participants[:t])
    assert group.base_mul(interpolate(shares, quorum)) == key
    assert group.base_mul(interpolate(shares, quorum[:-1])) != key  # t - 1 shares are not enough


def test_subset_must_be_big_enough_and_contain_us():
    sid = secrets.token_bytes(32)
    with pytest.raises(LocalProtocolError, match="cannot make a 3-of-5"):
        DkgParty(ED25519, sid, 1, 5, 3, participants=(1, 2))
    with pytest.raises(LocalProtocolError, match="not among the participants"):
        DkgParty(ED25519, sid, 4, 5, 3, participants=(1, 2, 3))
    with pytest.raises(LocalProtocolError, match="distinct ids"):
        DkgParty(ED25519, sid, 1, 3, 2, participants=(1, 1, 4))


def test_participant_set_is_bound_into_the_transcript():
    """Two parties that disagree on P never finish together: their echo digests differ."""
    sid = secrets.token_bytes(32)
    a = DkgParty(ED25519, sid, 1, 3, 2, participants=(1, 2))
    b = DkgParty(ED25519, sid, 2, 3, 2, participants=(1, 2, 3))
    ca, cb = a.round1(), b.round1()
    a.receive(cb)
    b.receive(ca)
    echo_a, _ = a.round2()
    assert b.missing()["commitments"] == [3]  # b waits for a party a does not expect
    c = DkgParty(ED25519, sid, 3, 3, 2, participants=(1, 2, 3))
    b.receive(c.round1())
    echo_b, _ = b.round2()
    assert echo_a.digest != echo_b.digest


def test_frost_subset_keygen_signs_with_ed25519_checked_by_pynacl():
    shares = run_local_dkg(ED25519, 3, 2, participants=(1, 3))
    key = shares[0].group_public_key
    message = b"signed while party 2 was down"
    sid = secrets.token_bytes(32)
    sigs = run_in_process([FrostSignSession(FROST_ED25519, s, sid, [1, 3], message) for s in shares])
    assert sigs[0] == sigs[1]
    nacl.signing.VerifyKey(key).verify(message, sigs[0])


@pytest.mark.parametrize(("n", "t", "participants"), [(3, 2, (1, 2)), (5, 3, (1, 3, 5))])
def test_dkls23_subset_keygen_signs_checked_by_coincurve(n, t, participants):
    keys = local.run_dkg(n, t, participants=participants)
    assert {k.public_key for k in keys} == {keys[0].public_key}
    for k in keys:
        assert sorted(k.pairs) == [j for j in participants if j != k.party_id]
        assert Dkls23Key.from_bytes(k.to_bytes()) == k  # the v2 encoding carries the pair count
    digest = hashlib.sha256(b"dkls23 with parties down").digest()
    verify_independently(keys[0].public_key, digest, local.sign_now(keys[:t], digest))
    absent = next(j for j in range(1, n + 1) if j not in participants)
    signers = [absent, *(k.party_id for k in keys[:t - 1])]
    with pytest.raises(LocalProtocolError, match="no OT set-up"):  # until the pairwise re-setup ran
        SignSession(keys[0], secrets.token_bytes(32), signers)
