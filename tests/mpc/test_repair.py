"""Share repair: t helpers give an absent party its share; the result verifies against the
evidence-authenticated commitments, reconstructs the same key with any other share, and signs
(FROST checked by PyNaCl, DKLs23 after the pairwise OT re-setup checked by coincurve/cryptography)."""

from __future__ import annotations

import hashlib
import secrets

import nacl.signing
import pytest

from appliance.local.demo_dkls23 import verify_independently
from appliance.mpc_party.protocols.confirm import ConfirmSession, make_confirm, statement_for
from appliance.mpc_party.protocols.dkg import DkgParty, run_local
from appliance.mpc_party.protocols.dkls23 import local
from appliance.mpc_party.protocols.dkls23.keygen import KeygenSession
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.group import ED25519, SECP256K1, lagrange_at_zero
from appliance.mpc_party.protocols.repair import (
    Invitation,
    RepairHelperSession,
    RepairTargetSession,
    lagrange_at,
)
from appliance.mpc_party.protocols.sessions import FrostSignSession, run_in_process
from appliance.mpc_party.protocols.wire import ProtocolAbort
from tests.mpc.test_confirm import IDENTITIES, signer


def evidence_of(parties, request_id=1):
    st = {p.party_id: statement_for(p, request_id, "test") for p in parties}
    sessions = [ConfirmSession(i, tuple(st), make_confirm(signer(i), i, st[i]), st[i], IDENTITIES) for i in st]
    return run_in_process(sessions)[0]


def repair(group, shares, evidence, target, helpers, tamper=None):
    inv = Invitation(evidence.statement.group_public_key, target, tuple(helpers), secrets.token_bytes(32))
    by_id = {s.party_id: s for s in shares}
    sessions = [RepairTargetSession(group, inv, evidence.statement.group_public_key, IDENTITIES)]
    for h in helpers:
        secret = by_id[h].secret if tamper is None else tamper(h, by_id[h].secret)
        sessions.append(RepairHelperSession(group, inv, h, secret, evidence))
    return run_in_process(sessions)[0]


def test_lagrange_at_x_interpolates():
    q = ED25519.order
    coefficients = [secrets.randbelow(q) for _ in range(3)]
    f = {x: sum(c * x**k for k, c in enumerate(coefficients)) % q for x in range(1, 6)}
    helpers = [1, 3, 5]
    assert sum(lagrange_at(h, helpers, 4, q) * f[h] for h in helpers) % q == f[4]
    assert lagrange_at(1, helpers, 0, q) == lagrange_at_zero(1, helpers, q)


@pytest.mark.parametrize("group", [ED25519, SECP256K1], ids=lambda g: g.name)
@pytest.mark.parametrize(("n", "t", "participants", "target", "helpers"), [
    (3, 2, (1, 3), 2, (1, 3)), (5, 3, (1, 2, 4), 5, (1, 2, 4)), (5, 3, (1, 2, 3, 4), 5, (2, 3, 4))])
def test_repaired_share_verifies_and_reconstructs_the_key(group, n, t, participants, target, helpers):
    sid = secrets.token_bytes(32)
    parties = [DkgParty(group, sid, i, n, t, participants=participants) for i in participants]
    shares = run_local(group, parties)
    evidence = evidence_of(parties)
    repaired = repair(group, shares, evidence, target, helpers)
    assert group.base_mul(repaired.secret) == shares[0].verification_shares[target]
    mixed = [repaired.key_share(target), *shares[: t - 1]]  # the repaired share with t - 1 others
    ids = [s.party_id for s in mixed]
    secret = sum(lagrange_at_zero(s.party_id, ids, group.order) * s.secret for s in mixed) % group.order
    assert group.base_mul(secret) == shares[0].group_public_key


def test_a_cheating_helper_makes_the_target_refuse_naming_the_set():
    group = ED25519
    sid = secrets.token_bytes(32)
    parties = [DkgParty(group, sid, i, 3, 2, participants=(1, 3)) for i in (1, 3)]
    shares = run_local(group, parties)
    with pytest.raises(ProtocolAbort, match=r"helper set \[1, 3\]") as info:
        repair(group, shares, evidence_of(parties), 2, (1, 3), tamper=lambda h, s: s + (h == 3))
    assert info.value.culprit is None  # the target cannot tell which helper: it tries another set


def test_repair_without_complete_evidence_is_refused():
    group = ED25519
    sid = secrets.token_bytes(32)
    parties = [DkgParty(group, sid, i, 3, 2, participants=(1, 3)) for i in (1, 3)]
    shares = run_local(group, parties)
    evidence = evidence_of(parties)
    partial = type(evidence)(evidence.statement, evidence.notes[:1])
    with pytest.raises(ProtocolAbort, match="no complete confirmation evidence"):
        repair(group, shares, partial, 2, (1, 3))


def test_frost_quorums_with_the_repaired_party_sign_checked_by_pynacl():
    sid = secrets.token_bytes(32)
    parties = [DkgParty(ED25519, sid, i, 3, 2, participants=(1, 2)) for i in (1, 2)]
    shares = run_local(ED25519, parties)
    repaired = repair(ED25519, shares, evidence_of(parties), 3, (1, 2)).key_share(3)
    key = shares[0].group_public_key
    for quorum in ([shares[0], repaired], [shares[1], repaired]):
        message = b"signed with the repaired share %d" % quorum[0].party_id
        signers = [s.party_id for s in quorum]
        sign_sid = secrets.token_bytes(32)
        sigs = run_in_process([FrostSignSession(FROST_ED25519, s, sign_sid, signers, message) for s in quorum])
        nacl.signing.VerifyKey(key).verify(message, sigs[0])


def test_dkls23_repaired_party_signs_after_the_pairwise_resetup():
    sid = secrets.token_bytes(32)
    sessions = [KeygenSession(sid, i, 3, 2, participants=(1, 3)) for i in (1, 3)]
    keys = local._run_keygen(sessions, None)  # noqa: SLF001 - the driver, keeping the DKG objects
    evidence = evidence_of([s.dkg for s in sessions])
    repaired = repair(SECP256K1, [k.as_dkg_share() for k in keys], evidence, 2, (1, 3)).dkls23_key(2)
    assert repaired.pairs == {} and repaired.public_key == keys[0].public_key
    k1, k3 = keys
    k1, repaired = local.resetup_pair(k1, repaired)
    k3, repaired = local.resetup_pair(k3, repaired)
    for i, quorum in enumerate(([k1, repaired], [repaired, k3], [k1, k3])):
        digest = hashlib.sha256(b"dkls23 repaired %d" % i).digest()
        verify_independently(keys[0].public_key, digest, local.sign_now(quorum, digest))
