"""A party joining a key (issue 15): the chain adds party 4 to a 2-of-3 keyring and raises the threshold
to 3. The holders' version reports tell the joiner the sharing it is about to receive; every party
applies the same pure rules (rules/lifecycle.py `decide`, rules/membership.py `reshare_plan`,
mpc_party/lifecycle.py `_syncing`) to the same reports; the joiner receives its share (FROST and DKLs23
with OT set-ups with every holder), and nobody commits until the joiner reports the new sharing.
Signatures of quorums with the joiner are verified by independent libraries; lies in the reports and
bad dealings to the joiner are refused."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets

import pytest

from appliance.local.demo_dkls23 import verify_independently
from appliance.mpc_party.lifecycle import _joining, _syncing
from appliance.mpc_party.members import share_holders
from appliance.mpc_party.protocols.dkls23 import local as dkls_local
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.frost.local import run_dkg, sign
from appliance.mpc_party.protocols.group import ED25519, SECP256K1
from appliance.mpc_party.protocols.reshare import ReshareSpec, ReshareSubShare
from appliance.mpc_party.protocols.reshare_sessions import reshare_session
from appliance.mpc_party.protocols.sessions import run_in_process
from appliance.mpc_party.protocols.versionsync import (
    NONE,
    Holding,
    VersionReport,
    VersionSyncSession,
    sharing_digest,
)
from appliance.mpc_party.protocols.wire import ProtocolAbort
from appliance.rules.lifecycle import Action, agreed_sharing, decide
from appliance.rules.membership import Membership, reshare_plan
from tests.mpc.test_frost import verify_ed25519
from tests.mpc.test_reshare import run_tampered

TARGET = Membership((1, 2, 3, 4), 3)  # the chain's keyring after MsgAddKeyringParty + MsgUpdateKeyring
KEY_LABEL, ATTEMPT = 7, 0


def digest(share) -> bytes:
    if isinstance(share, Dkls23Key):
        return sharing_digest(share.public_key, share.public_shares)
    return sharing_digest(share.group_public_key, share.verification_shares)


def holding(share, pending=None) -> Holding:
    return Holding(digest(share), digest(pending) if pending is not None else NONE, share.t,
                   tuple(share_holders(share)))


def sync(reports: dict[int, Holding]) -> dict[int, dict[int, Holding]]:
    """One version sync among the reporting parties (bytes on every hop); each party's result."""
    sid = secrets.token_bytes(32)
    parties = tuple(sorted(reports))
    sessions = [VersionSyncSession(sid, p, parties, reports[p]) for p in parties]
    return dict(zip(parties, run_in_process(sessions), strict=True))


def join(old: dict[int, object], key_type: str, public_key: bytes) -> dict[int, object]:
    """The whole join as the daemons run it, with the rules each party applies to its own view."""
    holders = tuple(sorted(old))
    t = next(iter(old.values())).t
    holders_plan = reshare_plan(holders, t, TARGET, KEY_LABEL, ATTEMPT)
    syncing = _syncing(holders, holders_plan, t)
    assert syncing == TARGET.parties  # the joiner syncs among the chain's parties: the same set
    views = sync({p: holding(old[p]) if p in old else Holding() for p in syncing})
    # the joiner learns the sharing from the holders' reports and derives the same plan
    learned = agreed_sharing(views[4], joining=(4,))
    assert learned is not None and (learned.t, learned.holders) == (t, holders)
    assert reshare_plan(learned.holders, learned.t, TARGET, KEY_LABEL, ATTEMPT) == holders_plan
    for p in syncing:
        assert decide(p, views[p], allow_refresh=True, joining=_joining(holders, holders_plan)) is Action.REFRESH
    group = ED25519 if key_type == "KEY_TYPE_EDDSA_ED25519" else SECP256K1
    spec = ReshareSpec(group, secrets.token_bytes(32), public_key, holders_plan.dealers, holders_plan.new_parties,
                       holders_plan.new_threshold)
    sessions = [reshare_session(key_type, spec, p, old.get(p), secrets.token_bytes) for p in spec.participants]
    new = dict(zip(spec.participants, run_in_process(sessions), strict=True))
    # sync 2: every new holder reports the new sharing; only then does anybody commit
    after = sync({p: dataclasses.replace(holding(old[p]) if p in old else Holding(), pending=digest(new[p]))
                  for p in syncing})
    assert all(decide(p, after[p], allow_refresh=False) is Action.COMMIT for p in syncing)
    return new


def test_ed25519_key_joined_by_party_4_signs_with_quorums_including_it():
    old = {s.party_id: s for s in run_dkg(3, 2, FROST_ED25519)}
    key = old[1].group_public_key
    new = join(old, "KEY_TYPE_EDDSA_ED25519", key)
    assert new[4].group_public_key == key and (new[4].t, new[4].n) == (3, 4)
    assert new[4].session_id == old[1].session_id  # the key id the dealers named, agreed by the echo
    for quorum in ((1, 2, 4), (2, 3, 4), (1, 3, 4)):
        msg = secrets.token_bytes(40)
        verify_ed25519(key, msg, sign(FROST_ED25519, [new[i] for i in quorum], msg))


def test_dkls23_key_joined_by_party_4_has_ot_pairs_with_every_holder_and_signs():
    old = {k.party_id: k for k in dkls_local.run_dkg(3, 2)}
    new = join(old, "KEY_TYPE_BITCOIN_SECP256K1", old[1].public_key)
    assert new[4].public_key == old[1].public_key and sorted(new[4].pairs) == [1, 2, 3]
    assert all(4 in new[i].pairs for i in (1, 2, 3))
    for quorum in ((1, 2, 4), (2, 3, 4)):
        digest32 = hashlib.sha256(secrets.token_bytes(16)).digest()
        sig = dkls_local.sign_now([new[i] for i in quorum], digest32)
        verify_independently(new[4].public_key, digest32, sig)


# --- what a lying report or a bad dealing to the joiner achieves: nothing but a wait -------------------


def reports_2of3(shares) -> dict[int, Holding]:
    return {**{p: holding(shares[p]) for p in (1, 2, 3)}, 4: Holding()}


def test_a_holder_lying_about_the_sharing_stops_the_resharing_for_everyone():
    old = {s.party_id: s for s in run_dkg(3, 2, FROST_ED25519)}
    for lie in ({"t": 1}, {"holders": (1, 2, 3, 4)}, {"holders": (1, 2)}):
        reports = reports_2of3(old)
        reports[2] = dataclasses.replace(reports[2], **lie)
        views = sync(reports)
        assert agreed_sharing(views[4], joining=(4,)) is None
        assert all(decide(p, views[p], allow_refresh=True, joining=(4,)) is Action.WAIT for p in views), lie


def test_a_joiner_claiming_a_sharing_gets_no_resharing():
    old = {s.party_id: s for s in run_dkg(3, 2, FROST_ED25519)}
    reports = reports_2of3(old)
    reports[4] = Holding(NONE, secrets.token_bytes(32))  # "I already hold a pending one"
    views = sync(reports)
    assert all(decide(p, views[p], allow_refresh=True, joining=(4,)) is not Action.REFRESH for p in (1, 2, 3))


def test_holders_never_commit_a_sharing_the_joiner_does_not_report():
    """A dealer that cheats the joiner alone (a bad sub-share): the joiner names it and holds nothing;
    the holders' new sharing is then retired, not committed, so the threshold never silently shrinks."""
    old = {s.party_id: s for s in run_dkg(3, 2, FROST_ED25519)}
    plan = reshare_plan((1, 2, 3), 2, TARGET, KEY_LABEL, ATTEMPT)
    spec = ReshareSpec(ED25519, secrets.token_bytes(32), old[1].group_public_key, plan.dealers, plan.new_parties, 3)
    cheat = plan.dealers[0]

    def corrupt(m, to):
        if isinstance(m, ReshareSubShare) and m.sender == cheat and to == 4:
            return dataclasses.replace(m, value=(m.value + 1) % ED25519.order)
        return m

    outcome = run_tampered(spec, old, corrupt)
    assert isinstance(outcome[4], ProtocolAbort) and outcome[4].culprit == cheat
    pending = secrets.token_bytes(32)  # what the holders would hold had they finished
    reports = {p: dataclasses.replace(holding(old[p]), pending=pending) for p in (1, 2, 3)}
    reports[4] = Holding()
    assert all(decide(p, reports, allow_refresh=False) is Action.RETIRE for p in (1, 2, 3))


@pytest.mark.parametrize("body", [
    bytes(64) + (2).to_bytes(2, "big") + (2).to_bytes(2, "big") + (3).to_bytes(2, "big") + (1).to_bytes(2, "big"),
    bytes(64) + (3).to_bytes(2, "big") + (2).to_bytes(2, "big") + (1).to_bytes(2, "big") + (2).to_bytes(2, "big"),
    bytes(64) + (1).to_bytes(2, "big") + (33).to_bytes(2, "big"),
])
def test_malformed_version_reports_name_their_sender(body):
    sid = secrets.token_bytes(32)
    good = VersionReport(ED25519, sid, 2, NONE, NONE).to_bytes()
    header = good[:len(good) - len(bytes(64) + bytes(4))]
    receiver = VersionSyncSession(sid, 1, (1, 2), Holding())
    with pytest.raises(ProtocolAbort) as exc:
        receiver.receive(2, header + body)
    assert exc.value.culprit == 2
