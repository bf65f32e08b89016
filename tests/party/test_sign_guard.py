"""The party's signing guards of issue 14, on the daemon's own methods with a real state file:
one signature per request (a later job gets the same one, no second session) and at most
MAX_SIGNER_SETS sessions per (request, attempt)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from types import SimpleNamespace

import pytest

from appliance.mpc_party import daemon as party_daemon
from appliance.mpc_party.daemon import MAX_SIGNER_SETS, PartyDaemon
from appliance.mpc_party.local_api import JobFailed, SignJob
from appliance.mpc_party.state import PartyState


def fake_party(tmp_path, sessions: list[tuple[int, ...]]):
    """Just what `_sign` touches; the session itself is replaced by a counter of runs."""
    party = SimpleNamespace(me=1, keyring="keyring1", _lock=threading.Lock(), _signer_sets=OrderedDict(),
                            _request_locks={}, state=PartyState(tmp_path / "party_state.sqlite"))
    party._check_attempt = lambda job, mpc_btl: None
    party._request_lock = lambda rid: PartyDaemon._request_lock(party, rid)
    party._join_signer_set = lambda job, peer=None: PartyDaemon._join_signer_set(party, job, peer)

    def session(job, sid):
        sessions.append(job.signers)
        return b"signature %d" % len(sessions)

    party._sign_session = session
    return party


def job(signers: tuple[int, ...], attempt: int = 0, retry: int = 0, request_id: int = 7) -> SignJob:
    return SignJob(request_id, "KEY_TYPE_ECDSA_SECP256K1", 3, b"\x02" * 33, bytes(32), signers, attempt, retry)


def test_a_request_signed_once_gets_the_same_signature_for_any_later_set(tmp_path) -> None:
    sessions: list[tuple[int, ...]] = []
    party = fake_party(tmp_path, sessions)
    first = PartyDaemon._sign(party, job((1, 2)), b"sid-a", 100)
    again = PartyDaemon._sign(party, job((1, 3), attempt=1), b"sid-b", 100)
    assert first == again == b"signature 1" and sessions == [(1, 2)]  # no second session ran
    reopened = PartyState(tmp_path / "party_state.sqlite")  # durable: a restart remembers it
    assert reopened.signature_of("keyring1", 7) == first
    assert PartyDaemon._sign(party, job((1, 2), request_id=8), b"sid-c", 100) == b"signature 2"


def test_at_most_max_signer_sets_sessions_per_request_and_attempt(tmp_path) -> None:
    party = fake_party(tmp_path, [])
    runs = [((1, 2), 0), ((1, 3), 0), ((1, 2), 1), ((1, 3), 1), ((1, 4), 0)]
    for signers, retry in runs[:MAX_SIGNER_SETS]:
        PartyDaemon._join_signer_set(party, job(signers, retry=retry))
    PartyDaemon._join_signer_set(party, job((1, 2)))  # one already joined counts once
    with pytest.raises(JobFailed, match="at most"):
        PartyDaemon._join_signer_set(party, job(*runs[MAX_SIGNER_SETS][:1], retry=runs[MAX_SIGNER_SETS][1]))
    PartyDaemon._join_signer_set(party, job((1, 4), attempt=1))  # a new attempt has its own budget


def test_party_module_bounds_retries_like_the_rule() -> None:
    from appliance.rules.attempts import MAX_SET_RETRIES

    assert party_daemon.MAX_SET_RETRIES == MAX_SET_RETRIES
    assert MAX_SIGNER_SETS >= 2 * MAX_SET_RETRIES  # two sets, each run twice, fit in one attempt


def test_signer_sets_must_be_t_distinct_roster_parties_and_retries_bounded() -> None:
    # the key's holders and threshold come from its stored share (mpc_party/members.py): here 1..3, t = 2
    party = SimpleNamespace(me=1, members=SimpleNamespace(of=lambda _public_key: ((1, 2, 3), 2)))
    party._check_signers = lambda *args: PartyDaemon._check_signers(party, *args)
    for signers in ((1, 2, 3), (1, 1), (1, 4), (1,)):
        with pytest.raises(JobFailed, match="distinct parties"):
            PartyDaemon._check_attempt(party, job(signers), 100)
    with pytest.raises(JobFailed, match="retry 2"):
        PartyDaemon._check_attempt(party, job((1, 2), retry=2), 100)
