"""The party's local endpoint: jobs in over a unix socket, results or clear failures out."""

from __future__ import annotations

import stat

import pytest

from appliance.mpc_party.local_api import (
    JobFailed,
    KeygenJob,
    LocalServer,
    PartyClient,
    SignJob,
    decode_job,
    encode_job,
)


def test_job_encoding_round_trip_and_rejects() -> None:
    jobs = [KeygenJob(4, "KEY_TYPE_EDDSA_ED25519", (1, 2, 3), 2, 1),
            SignJob(9, "KEY_TYPE_ECDSA_SECP256K1", 3, b"\x02" * 33, b"\x11" * 32, (1, 3))]
    for job in jobs:
        assert decode_job(encode_job(job)) == job
    for bad in (b"{", b'{"kind": "key"}', b'{"kind": "mint"}', b"[]"):
        with pytest.raises(ValueError, match="job"):
            decode_job(bad)


def test_local_server_runs_jobs_and_reports_failures(tmp_path) -> None:
    def run(job):
        if isinstance(job, SignJob):
            raise JobFailed("peer timed out", retryable=True, missing=[3])
        return b"\x02" + bytes(32)

    server = LocalServer(tmp_path / "party.sock", run, lambda: {"party": 1}).start()
    try:
        assert stat.S_IMODE((tmp_path / "party.sock").stat().st_mode) & 0o077 == 0
        client = PartyClient(tmp_path / "party.sock")
        assert client.run(KeygenJob(1, "KEY_TYPE_ECDSA_SECP256K1", (1, 2, 3), 2), 5) == b"\x02" + bytes(32)
        with pytest.raises(JobFailed) as failed:
            client.run(SignJob(2, "KEY_TYPE_ECDSA_SECP256K1", 1, b"\x02" * 33, bytes(32), (1, 3)), 5)
        assert failed.value.retryable and failed.value.missing == [3]
        assert client.status() == {"party": 1}
        client.close()
    finally:
        server.stop()
    down = PartyClient(tmp_path / "party.sock")
    with pytest.raises(JobFailed, match="unreachable") as failed:
        down.run(KeygenJob(1, "KEY_TYPE_ECDSA_SECP256K1", (1, 2, 3), 2), 1)
    assert failed.value.retryable


def test_the_controller_can_ask_which_signature_its_party_made(tmp_path) -> None:
    """`Signature`: what the party made for a request (controller: a copy of its own session's signature
    is posted at once); none, or an unreachable daemon, is None."""
    made = {7: b"\x01" * 64}
    server = LocalServer(tmp_path / "party.sock", lambda job: b"", lambda: {}, signature=made.get).start()
    client = PartyClient(tmp_path / "party.sock")
    try:
        assert client.signature(7) == b"\x01" * 64
        assert client.signature(8) is None
        assert client.signature(2**64 - 1) is None
    finally:
        client.close()
        server.stop()
    down = PartyClient(tmp_path / "party.sock")
    assert down.signature(7, timeout=0.5) is None
    down.close()
