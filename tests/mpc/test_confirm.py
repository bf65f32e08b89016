"""The keygen confirmation round: signed notes, complete evidence, aborts that name nobody, and
equivocation that names its signer with both notes as evidence."""

from __future__ import annotations

import dataclasses
import secrets

import pytest
from nacl.signing import SigningKey

from appliance.mpc_party.protocols import confirm
from appliance.mpc_party.protocols.confirm import (
    ConfirmSession,
    Equivocation,
    NoteError,
    PeerAborted,
    complete_evidence,
    make_abort,
    make_confirm,
    read_note,
    statement_for,
)
from appliance.mpc_party.protocols.dkg import DkgParty, run_local
from appliance.mpc_party.protocols.group import ED25519, SECP256K1
from appliance.mpc_party.protocols.sessions import run_in_process
from appliance.mpc_party.protocols.wire import ProtocolAbort

KEYS = {i: SigningKey.generate() for i in range(1, 6)}
IDENTITIES = {i: bytes(k.verify_key) for i, k in KEYS.items()}


def signer(i):
    return lambda data: KEYS[i].sign(data).signature


def keygen(group, n, t, participants):
    sid = secrets.token_bytes(32)
    parties = [DkgParty(group, sid, i, n, t, participants=participants) for i in participants]
    shares = run_local(group, parties)
    return parties, shares


def statements(parties, request_id=7, key_type="KEY_TYPE_EDDSA_ED25519"):
    return {p.party_id: statement_for(p, request_id, key_type) for p in parties}


@pytest.mark.parametrize("group", [ED25519, SECP256K1], ids=lambda g: g.name)
def test_everyone_confirms_the_same_statement_and_gets_complete_evidence(group):
    parties, shares = keygen(group, 5, 3, (1, 3, 4))
    st = statements(parties)
    assert len({s.encode() for s in st.values()}) == 1
    statement = st[1]
    assert statement.group_public_key == shares[0].group_public_key
    for j in range(1, 6):  # every index, absent ones included
        assert statement.verification_share(j) == shares[0].verification_shares[j]
    sessions = [ConfirmSession(i, (1, 3, 4), make_confirm(signer(i), i, st[i]), st[i], IDENTITIES)
                for i in (1, 3, 4)]
    results = run_in_process(sessions)
    assert len({r.encode() for r in results}) == 1
    evidence = complete_evidence(confirm.decode_notes(results[0].encode()), IDENTITIES)
    assert evidence is not None and evidence.statement == statement


def test_incomplete_or_forged_evidence_is_not_evidence():
    parties, _ = keygen(ED25519, 3, 2, (1, 2, 3))
    st = statements(parties)
    notes = [make_confirm(signer(i), i, st[i]) for i in (1, 2)]
    assert complete_evidence(notes, IDENTITIES) is None  # party 3 never confirmed
    forged = make_confirm(signer(1), 3, st[3])  # party 1 signs in party 3's name
    assert complete_evidence([*notes, forged], IDENTITIES) is None
    with pytest.raises(NoteError, match="bad signature"):
        read_note(forged, IDENTITIES)
    assert complete_evidence([*notes, make_confirm(signer(3), 3, st[3])], IDENTITIES) is not None


def test_an_abort_names_nobody_and_stops_the_commit():
    parties, _ = keygen(ED25519, 3, 2, (1, 2, 3))
    st = statements(parties)
    sid = st[1].session_id
    session = ConfirmSession(1, (1, 2, 3), make_confirm(signer(1), 1, st[1]), st[1], IDENTITIES)
    session.start()
    session.receive(2, make_confirm(signer(2), 2, st[2]))
    with pytest.raises(PeerAborted) as info:
        session.receive(3, make_abort(signer(3), 3, sid, "round 2: no answer from parties [2]"))
    assert info.value.culprit is None and info.value.party == 3
    aborting = ConfirmSession(3, (1, 2, 3), make_abort(signer(3), 3, sid, "store failed"), None, IDENTITIES)
    assert aborting.start() and aborting.done and aborting.result() is None


def test_equivocation_names_the_signer_with_both_notes():
    parties, _ = keygen(ED25519, 3, 2, (1, 2, 3))
    st = statements(parties)
    honest = make_confirm(signer(3), 3, st[3])
    other = make_confirm(signer(3), 3, dataclasses.replace(st[3], transcript=bytes(32)))
    session = ConfirmSession(1, (1, 2, 3), make_confirm(signer(1), 1, st[1]), st[1], IDENTITIES)
    session.receive(3, honest)
    with pytest.raises(Equivocation) as info:
        session.receive(3, other)
    assert info.value.culprit == 3
    first, second = info.value.evidence
    assert read_note(first, IDENTITIES).signer == read_note(second, IDENTITIES).signer == 3 and first != second
    # a third party checks the same evidence on its own: both notes verify under party 3's key
    with pytest.raises(Equivocation) as again:
        complete_evidence([first, second], IDENTITIES)
    assert again.value.culprit == 3


def test_confirming_another_statement_names_the_sender_not_a_relay():
    parties, _ = keygen(ED25519, 3, 2, (1, 2, 3))
    st = statements(parties)
    session = ConfirmSession(1, (1, 2, 3), make_confirm(signer(1), 1, st[1]), st[1], IDENTITIES)
    wrong = make_confirm(signer(2), 2, dataclasses.replace(st[2], request_id=8))
    with pytest.raises(ProtocolAbort) as info:
        session.receive(2, wrong)
    assert info.value.culprit == 2
    relayed = make_confirm(signer(3), 3, st[3])
    session2 = ConfirmSession(1, (1, 2, 3), make_confirm(signer(1), 1, st[1]), st[1], IDENTITIES)
    with pytest.raises(ProtocolAbort) as info:
        session2.receive(2, relayed)  # party 2 forwards party 3's note as its own
    assert info.value.culprit == 2


# --- the holdings exchange: what a party holds for a request before the next attempt --------------

def exchange(holdings, tamper=lambda sender, target, round_, payload: payload):
    """Run HoldingsSessions {party: (status, notes)} to the end; `tamper` rewrites chosen messages."""
    sessions = {i: confirm.HoldingsSession(i, tuple(holdings), 7, st, notes, IDENTITIES)
                for i, (st, notes) in holdings.items()}
    queue = [(i, o) for i, s in sessions.items() for o in s.start()]
    while queue:
        sender, out = queue.pop(0)
        for target in (p for p in sessions if p != sender):
            if not sessions[target].done:
                payload = tamper(sender, target, out.round, out.payload)
                queue += [(target, o) for o in sessions[target].receive(sender, payload)]
    return {i: s.result() for i, s in sessions.items() if s.done}


def test_holdings_commit_on_complete_evidence_else_discard():
    parties, _ = keygen(ED25519, 3, 2, (1, 2, 3))
    st = statements(parties)
    note = {i: make_confirm(signer(i), i, st[i]) for i in (1, 2, 3)}
    # party 3 committed (it had every note), 1 and 2 missed party 3's: all learn the evidence
    found = exchange({1: (confirm.PENDING, [note[1], note[2]]), 2: (confirm.PENDING, [note[2]]),
                      3: (confirm.COMMITTED, list(note.values()))})
    assert {r.evidence.statement for r in found.values()} == {st[1]}
    # nobody holds party 3's note (it never confirmed): no evidence anywhere, everyone discards
    found = exchange({1: (confirm.PENDING, [note[1], note[2]]), 2: (confirm.PENDING, [note[2], note[1]]),
                      3: (confirm.NONE, [])})
    assert all(r.evidence is None for r in found.values()) and len(found) == 3


def test_holdings_relay_evidence_shown_to_one_party_only():
    """Party 3 shows its complete evidence to party 1 only, in round 1: party 1 relays it in round 2,
    so party 2 commits too instead of discarding (the honest parties do not split)."""
    parties, _ = keygen(ED25519, 3, 2, (1, 2, 3))
    st = statements(parties)
    note = {i: make_confirm(signer(i), i, st[i]) for i in (1, 2, 3)}
    def hide_from_2(sender, target, round_, payload):
        if (sender, target) != (3, 2):
            return payload
        return bytes([round_] + ([confirm.PENDING] if round_ == 1 else [])) + confirm.encode_notes([])

    holdings = {1: (confirm.PENDING, [note[1]]), 2: (confirm.PENDING, [note[2]]),
                3: (confirm.PENDING, list(note.values()))}
    found = exchange(holdings, tamper=hide_from_2)
    assert found[1].evidence is not None and found[2].evidence is not None
    assert found[1].evidence.statement == found[2].evidence.statement == st[1]

    def no_relay_either(sender, target, round_, payload):
        if sender == 1 and target == 2 and round_ == 2:
            return b"\x02" + confirm.encode_notes([])
        return hide_from_2(sender, target, round_, payload)

    assert exchange(holdings, tamper=no_relay_either)[2].evidence is None  # the relay is what saves it
