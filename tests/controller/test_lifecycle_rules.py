"""The life-cycle rules (appliance/rules/lifecycle.py) and the version sync session: the same slot on
every party, keys spread over the period, the two phases, and what each set of reports decides."""

from __future__ import annotations

import secrets

import pytest

from appliance.mpc_party.protocols.sessions import run_in_process
from appliance.mpc_party.protocols.versionsync import NONE, Holding, VersionSyncSession, sharing_digest
from appliance.mpc_party.protocols.wire import ProtocolAbort
from appliance.rules.lifecycle import (
    PHASE_REFRESH,
    PHASE_SYNC,
    Action,
    RefreshSchedule,
    dealers,
    decide,
    due,
    refresh_session_id,
    slot_at,
    slot_offset,
)

KEYRING = "keyring1abc"
SCHEDULE = RefreshSchedule(period_blocks=1000, window_blocks=40, attempt_blocks=10)


def test_every_key_gets_one_slot_per_period_with_both_phases():
    for key_id in (1, 2, 77):
        phases = {}
        for height in range(3000, 4000):
            slot = slot_at(SCHEDULE, KEYRING, key_id, height)
            if slot is not None:
                phases.setdefault(slot.phase, []).append(height)
                assert slot.attempt == (height - slot.start) // 10
        assert len(phases[PHASE_REFRESH]) == len(phases[PHASE_SYNC]) == 40
        assert (phases[PHASE_SYNC][0] - phases[PHASE_REFRESH][0]) % 1000 == 40  # sync follows refresh


def test_slots_spread_over_the_period():
    offsets = [slot_offset(KEYRING, k, SCHEDULE.period_blocks) for k in range(1, 201)]
    quarters = [sum(1 for o in offsets if q * 250 <= o < (q + 1) * 250) for q in range(4)]
    assert all(30 <= n <= 70 for n in quarters), quarters  # ~50 each: no burst
    # at any height only the few keys whose slot is open are due, never all of them
    busiest = max(len(due(SCHEDULE, KEYRING, list(range(1, 201)), h)) for h in range(0, 1000, 7))
    assert busiest <= 40


def test_off_and_bad_schedules():
    assert slot_at(RefreshSchedule(), KEYRING, 1, 5000) is None
    with pytest.raises(ValueError):
        RefreshSchedule(period_blocks=50, window_blocks=30)


def test_dealers_rotate_with_attempts_and_session_ids_differ():
    slot = next(s for h in range(2000) if (s := slot_at(SCHEDULE, KEYRING, 5, h)))
    later = slot_at(SCHEDULE, KEYRING, 5, slot.start + 10)
    assert later.attempt == slot.attempt + 1
    assert dealers([1, 2, 3], 2, slot) != dealers([1, 2, 3], 2, later)
    ids = {refresh_session_id("c", KEYRING, s, step) for s in (slot, later) for step in ("sync1", "sync2")}
    assert len(ids) == 4


A, B = secrets.token_bytes(32), secrets.token_bytes(32)


@pytest.mark.parametrize(("holdings", "me", "allow", "expected"), [
    ({1: Holding(A), 2: Holding(A), 3: Holding(A)}, 1, True, Action.REFRESH),
    ({1: Holding(A), 2: Holding(A), 3: Holding(A)}, 1, False, Action.WAIT),  # sync phase: no refresh
    ({1: Holding(A, B), 2: Holding(A, B), 3: Holding(A, B)}, 2, True, Action.COMMIT),
    ({1: Holding(B), 2: Holding(B), 3: Holding(A, B)}, 3, False, Action.COMMIT),  # the late one catches up
    ({1: Holding(B), 2: Holding(B), 3: Holding(A, B)}, 1, True, Action.WAIT),  # committed: wait for 3
    ({1: Holding(A, B), 2: Holding(A, B), 3: Holding(A)}, 1, True, Action.RETIRE),  # 3 never got B
    ({1: Holding(A, B), 2: Holding(B), 3: Holding(A)}, 1, True, Action.WAIT),  # 2 says active: never retire
    ({1: Holding(A), 2: Holding(A, B), 3: Holding(A)}, 1, True, Action.WAIT),  # a peer's pending: no refresh
])
def test_decide(holdings, me, allow, expected):
    assert decide(me, holdings, allow) is expected


def test_version_sync_session_collects_every_report():
    sid = secrets.token_bytes(32)
    mine = {1: Holding(A), 2: Holding(A, B), 3: Holding(NONE, B)}
    sessions = [VersionSyncSession(sid, i, (1, 2, 3), mine[i]) for i in (1, 2, 3)]
    assert all(result == mine for result in run_in_process(sessions))
    s = VersionSyncSession(sid, 1, (1, 2), mine[1])
    with pytest.raises(ProtocolAbort):
        s.receive(3, sessions[2].start()[0].payload)  # party 3 is no participant here


def test_sharing_digest_depends_on_every_verification_share():
    shares = {1: b"\x02" + bytes(32), 2: b"\x03" + bytes(32)}
    d = sharing_digest(b"k", shares)
    assert d != sharing_digest(b"k", {**shares, 2: b"\x02" + bytes(32)})
    assert d != sharing_digest(b"j", shares) and len(d) == 32


def test_refresh_job_round_trips_the_local_api_encoding():
    from appliance.mpc_party.local_api import RefreshJob, decode_job, encode_job, job_log_fields

    job = RefreshJob(7, "KEY_TYPE_EDDSA_ED25519", bytes(range(32)), 3, PHASE_SYNC, 1)
    assert decode_job(encode_job(job)) == job
    assert job_log_fields(job) == {"key_id": 7}


def test_invitation_header_binds_every_report():
    from appliance.mpc_party.protocols.versionsync import PROTOCOL_INVITE, invite_header, split_invite_header

    key, nonce = b"\x02" + bytes(32), secrets.token_bytes(32)
    header = invite_header(key, nonce)
    assert split_invite_header(header + b"rest") == (key, nonce)
    with pytest.raises(ValueError):
        split_invite_header(b"\x21" + key)  # no nonce
    sid = secrets.token_bytes(32)
    sessions = [VersionSyncSession(sid, i, (1, 2), Holding(A), header) for i in (1, 2)]
    assert sessions[0].protocol == PROTOCOL_INVITE
    assert all(r == {1: Holding(A), 2: Holding(A)} for r in run_in_process(sessions))
    other = VersionSyncSession(sid, 1, (1, 2), Holding(A), invite_header(key, secrets.token_bytes(32)))
    with pytest.raises(ProtocolAbort):  # a report naming another invitation
        other.receive(2, VersionSyncSession(sid, 2, (1, 2), Holding(A), header).start()[0].payload)
