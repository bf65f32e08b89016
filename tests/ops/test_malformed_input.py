"""Property tests: every boundary fed malformed input gives only its declared refusal.

The party's local socket API refuses with ValueError("malformed job: ...") (over the socket: an answer
`{"ok": false, "error": "malformed job: ..."}` and no ERROR log line); every config and roster loader
refuses with ConfigError naming the field. No other exception may come out (RecursionError,
OverflowError, UnicodeDecodeError, struct.error, AttributeError were all seen before these checks).
Inputs come from tests/ops/malformed.py, seeded, so a failure is reproducible.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from appliance.controller.service import ControllerConfig
from appliance.hsm.config import load_hsm_config
from appliance.mpc_party.daemon import PartyConfig
from appliance.mpc_party.local_api import (
    RUN,
    SERVICE,
    U32,
    U64,
    JobFailed,
    KeygenJob,
    LocalServer,
    PartyClient,
    SignJob,
    decode_job,
    encode_job,
)
from appliance.rules.roster import MAX_INDEX, Roster
from appliance.runtime.errors import ConfigError
from tests.ops.malformed import json_bodies, toml_documents

VALID_JOBS = [KeygenJob(4, "KEY_TYPE_EDDSA_ED25519", (1, 2, 3), 2, 1),
              SignJob(9, "KEY_TYPE_ECDSA_SECP256K1", 3, b"\x02" * 33, b"\x11" * 32, (1, 3), 7)]
VALID_BODIES = [json.loads(encode_job(job)) for job in VALID_JOBS]


def _check_job(job: KeygenJob | SignJob) -> None:
    """A body that decodes must decode to a job every later step can take as it is."""
    assert type(job.request_id) is int and 0 <= job.request_id <= U64
    assert type(job.attempt) is int and 0 <= job.attempt <= U32
    indices = job.parties if isinstance(job, KeygenJob) else job.signers
    assert indices and all(type(i) is int and 1 <= i <= MAX_INDEX for i in indices)
    assert len(set(indices)) == len(indices)
    if isinstance(job, KeygenJob):
        assert 1 <= job.threshold <= len(job.parties)
    else:
        assert type(job.key_id) is int and 0 <= job.key_id <= U64
        assert isinstance(job.public_key, bytes) and isinstance(job.data, bytes)


def test_decode_job_refuses_malformed_bodies_with_value_error_only() -> None:
    cases = 0
    for body in json_bodies(VALID_BODIES, seed=16, count=3000):
        cases += 1
        try:
            job = decode_job(body)
        except ValueError as exc:
            assert str(exc).startswith("malformed job"), (body[:200], exc)
            assert len(str(exc)) < 400
            continue
        _check_job(job)
    assert cases > 3300


@pytest.mark.parametrize("body, reason", [
    (b'{"kind": "key", "request_id": true, "key_type": "K", "parties": [1, 2], "threshold": 2}', "request_id"),
    (b'{"kind": "key", "request_id": 1.5, "key_type": "K", "parties": [1, 2], "threshold": 2}', "request_id"),
    (b'{"kind": "key", "request_id": 1e400, "key_type": "K", "parties": [1, 2], "threshold": 2}', "request_id"),
    (b'{"kind": "key", "request_id": -1, "key_type": "K", "parties": [1, 2], "threshold": 2}', "request_id"),
    (b'{"kind": "key", "request_id": 18446744073709551616, "key_type": "K", "parties": [1], "threshold": 1}',
     "request_id"),
    (b'{"kind": "key", "request_id": 1, "key_type": "K", "parties": [1], "threshold": 1, "attempt": 4294967296}',
     "attempt"),
    (b'{"kind": "key", "request_id": 1, "key_type": "K", "parties": [1, 1], "threshold": 1}', "duplicate"),
    (b'{"kind": "key", "request_id": 1, "key_type": "K", "parties": [1, 2], "threshold": 3}', "threshold"),
    (b'[1, 2]', "JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed job"),
    (b'{"kind": "sign", "request_id": 1, "key_type": "K", "key_id": 1, "public_key": " 02", "data": "",'
     b' "signers": [1]}', "public_key"),
])
def test_decode_job_names_the_field(body: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match="malformed job") as refused:
        decode_job(body)
    assert reason in str(refused.value)


def test_local_socket_answers_every_malformed_body_with_a_refusal(tmp_path: Path, caplog) -> None:
    """Over the real unix-socket gRPC server: an answer, never an escaped exception (UNKNOWN) or an
    ERROR line; the handler is never reached with a malformed job."""
    reached: list[object] = []

    def run(job: KeygenJob | SignJob) -> bytes:
        _check_job(job)
        reached.append(job)
        raise JobFailed("test handler: refused", retryable=False)

    server = LocalServer(tmp_path / "party.sock", run, lambda: {"party": 1}).start()
    channel = grpc.insecure_channel(f"unix:{tmp_path / 'party.sock'}")
    call = channel.unary_unary(RUN, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    caplog.set_level(logging.INFO)
    try:
        for body in json_bodies(VALID_BODIES, seed=17, count=300):
            answer = json.loads(call(body, timeout=10))
            assert answer["ok"] is False, body[:200]
            assert answer["error"].startswith(("malformed job", "test handler")), (body[:200], answer)
    finally:
        channel.close()
        server.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_error_inside_the_party_daemon_reaches_the_controller_as_that_error(tmp_path: Path, caplog) -> None:
    """A malformed database inside the daemon (a real corrupt SQLite file) is answered as the error it
    is, retryable, in one ERROR line without a traceback; before, the controller saw "party daemon
    unreachable" and set party_up to 0."""
    corrupt = tmp_path / "shares.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x13" * 4096)

    def run(_job: KeygenJob | SignJob) -> bytes:
        with sqlite3.connect(corrupt) as db:
            db.execute("SELECT * FROM shares").fetchall()
        return b""

    def status() -> dict:
        return run(VALID_JOBS[0])  # type: ignore[return-value]

    server = LocalServer(tmp_path / "party.sock", run, status).start()
    client = PartyClient(tmp_path / "party.sock")
    caplog.set_level(logging.INFO)
    try:
        with pytest.raises(JobFailed) as failed:
            client.run(VALID_JOBS[0], 10)
        with pytest.raises(JobFailed) as status_failed:
            client.status(timeout=10)
    finally:
        client.close()
        server.stop()
    assert failed.value.retryable
    assert str(failed.value) == "party daemon error: DatabaseError: file is not a database"
    assert "unreachable" not in str(status_failed.value)
    assert "DatabaseError: file is not a database" in str(status_failed.value)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and all(r.exc_info is None for r in errors)
    assert "key request 4 failed inside the party daemon" in errors[0].getMessage()


def test_client_reads_a_malformed_answer_as_a_retryable_failure(tmp_path: Path) -> None:
    """The controller's side of the same boundary: whatever a broken daemon answers on the socket, the
    client raises JobFailed (never KeyError, TypeError or a non-int culprit)."""
    answers = [b"[]", b"{", b'{"ok": true}', b'{"ok": true, "result": "zz"}', b'{"ok": 1, "result": "00"}',
               b'{"ok": false, "culprit": "3", "missing": "12"}', b'{"ok": false, "missing": [true, 2]}']
    pending = iter(answers)
    server = grpc.server(ThreadPoolExecutor(2))
    handler = grpc.unary_unary_rpc_method_handler(lambda _r, _c: next(pending), _same, _same)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Run": handler}),))
    server.add_insecure_port(f"unix:{tmp_path / 'party.sock'}")
    server.start()
    client = PartyClient(tmp_path / "party.sock")
    try:
        for answer in answers:
            with pytest.raises(JobFailed) as failed:
                client.run(VALID_JOBS[0], 10)
            assert failed.value.culprit is None, answer
            assert all(type(m) is int for m in failed.value.missing), answer
    finally:
        client.close()
        server.stop(0)


def _same(data: bytes) -> bytes:
    return data


# --- config and roster loaders ---------------------------------------------------------------------

HSM = """[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "zrkeyring"
pin_file = "/etc/zrkeyring/pin"
"""
CHAIN = """[chain]
chain_id = "zrkeyring-dev-1"
endpoints = ["127.0.0.1:9090"]
plaintext_loopback_ok = true
agree = 1
agree_wait_s = 3.0
"""
PARTY = HSM + """[party]
index = 1
roster = "/etc/zrkeyring/cluster/roster.toml"
tls_dir = "/etc/zrkeyring/cluster"
data_dir = "/var/lib/zrkeyring/party"
local_socket = "/run/zrkeyring/party.sock"
listen = "0.0.0.0:7001"
round_timeout_s = 10.0
attempt_blocks = 10
""" + CHAIN + """[metrics]
address = "127.0.0.1:9810"
"""
CONTROLLER = HSM + """[controller]
index = 1
roster = "/etc/zrkeyring/cluster/roster.toml"
party_socket = "/run/zrkeyring/party.sock"
data_dir = "/var/lib/zrkeyring/controller"
poll_interval_s = 0.5
default_btl = 20
attempt_blocks = 10
start_margin_blocks = 2
tx_timeout_blocks = 10
job_timeout_s = 60.0
workers = 8
""" + CHAIN + """[metrics]
address = "127.0.0.1:9811"
"""
ROSTER = """[cluster]
name = "zrkeyring"
keyring = ""
threshold = 2
ca = "ca.pem"

[[party]]
index = 1
name = "party-1"
address = "127.0.0.1:7001"
tls_cert = "party-1.pem"
identity_key = "%s"
chain_address = ""

[[party]]
index = 2
name = "party-2"
address = "[::1]:7002"
tls_cert = "party-2.pem"
""" % ("ab" * 32)

LOADERS = {
    "hsm": (HSM, load_hsm_config),
    "party": (PARTY, PartyConfig.load),
    "controller": (CONTROLLER, ControllerConfig.load),
    "roster": (ROSTER, Roster.load),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_config_loader_refuses_malformed_files_with_config_error_only(name: str, tmp_path: Path) -> None:
    valid, load = LOADERS[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(valid)
    load(path)  # the base document is valid
    refused = 0
    for i, document in enumerate(toml_documents(valid, seed=16, count=400)):
        path.write_bytes(document)
        try:
            load(path)
        except ConfigError as exc:
            refused += 1
            message = str(exc)
            assert "\n" not in message.strip() and len(message) < 600, (i, document[:200], message)
        except Exception as exc:  # noqa: BLE001 - this is what the test looks for
            pytest.fail(f"case {i}: {type(exc).__name__} escaped for {document[:300]!r}: {exc}")
    assert refused > 100


@pytest.mark.parametrize("name, line, field", [
    ("party", 'listen = "0.0.0.0:\u0667\u0660\u0660\u0661"', "party.listen"),
    ("party", "index = true", "party.index"),
    ("party", "index = 70000", "party.index"),
    ("party", "attempt_blocks = 0", "party.attempt_blocks"),
    ("party", "round_timeout_s = nan", "party.round_timeout_s"),
    ("party", "round_timeout_s = inf", "party.round_timeout_s"),
    ("party", 'data_dir = "a\\u0000b"', "party.data_dir"),
    ("controller", "workers = 1.0", "controller.workers"),
    ("controller", "poll_interval_s = -1.0", "controller.poll_interval_s"),
    ("controller", "default_btl = 18446744073709551616", "controller.default_btl"),
    ("roster", 'address = "127.0.0.1:7\u00b2"', "party[0].address"),
])
def test_config_errors_name_the_field(name: str, line: str, field: str, tmp_path: Path) -> None:
    valid, load = LOADERS[name]
    key = line.split(" = ")[0]
    lines = valid.splitlines()
    first = next(i for i, text in enumerate(lines) if text.startswith(f"{key} = "))
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines[:first] + [line] + lines[first + 1:]))
    with pytest.raises(ConfigError) as refused:
        load(path)
    assert field in str(refused.value)


def test_config_that_is_not_utf8_or_nested_too_deeply(tmp_path: Path) -> None:
    path = tmp_path / "party.toml"
    path.write_bytes(PARTY.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        PartyConfig.load(path)
    path.write_bytes(b"x = " + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        PartyConfig.load(path)
