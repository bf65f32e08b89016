"""Presignature pools in the party (mpc_party/presign.py) over the real transport: three parties with
mutual-TLS gRPC, signed envelopes, durable party state in SQLite. The leader fills, armed members join,
signing takes the same oldest entry on both sides; the attacks: a peer naming another entry, a member
that was not armed (its controller busy or gone), a version change, a fill id run twice. Shares are
handed to the Presigner in memory here (the daemon loads them from the HSM-sealed store; that path is
tests/hsm/test_store_auth.py and the e2e tests)."""

from __future__ import annotations

import hashlib
import secrets
import threading

import coincurve
import nacl.signing
import pytest

from appliance.mpc_party import metrics
from appliance.mpc_party.envelope import Gate, Outbox
from appliance.mpc_party.local_api import JobFailed, PresignJob
from appliance.mpc_party.presign import Presigner, PresignPool
from appliance.mpc_party.protocols import dispatch
from appliance.mpc_party.protocols.dkls23 import local as dkls_local
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.frost import local as frost_local
from appliance.mpc_party.protocols.pool import HIT, MISMATCH, FillSession
from appliance.mpc_party.runner import RunnerConfig, SessionRunner
from appliance.mpc_party.state import PartyState
from appliance.mpc_party.transport import PeerClient, PeerServer, TlsCredentials
from tests.party.test_runner import run_parallel, three_party_cluster
from tests.transport.conftest import sign_with

KEYRING = "keyring1presignpool"
ECDSA, EDDSA = "KEY_TYPE_ECDSA_SECP256K1", dispatch.EDDSA


class Party:
    """One party's runner, pool and presigner; `version` is what its share store would say."""

    def __init__(self, i: int, runner: SessionRunner, state: PartyState, shares: dict[str, object]) -> None:
        self.i, self.runner, self.shares, self.version = i, runner, shares, 1
        self.busy = False
        self.pool = PresignPool(64)
        self.presigner = Presigner(me=i, keyring=KEYRING, pool=self.pool, runner=runner, state=state,
                                   rng_factory=lambda: secrets.token_bytes, load_share=self.load,
                                   busy=lambda: self.busy)
        runner.gate.on_unopened = self.presigner.on_unopened

    def load(self, key_type: str, _public_key: bytes) -> tuple[object, int]:
        return self.shares[key_type], self.version

    def sign(self, key_type: str, signers: tuple[int, ...], data: bytes, sid: bytes) -> tuple[bytes, str]:
        share = self.shares[key_type]
        inner = dispatch.sign_session(key_type, share, sid, signers, data, secrets.token_bytes)
        session = self.presigner.wrap(inner, key_type, public(key_type, share), self.version, signers, share, data)
        try:
            return self.runner.run(sid, session, join_timeout=True), session.outcome
        finally:
            self.presigner.settle(session, key_type, public(key_type, share), self.version)


def public(key_type: str, share: object) -> bytes:
    return share.group_public_key if key_type == EDDSA else share.public_key  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def parties(tmp_path_factory):
    made, roster, keys = three_party_cluster(tmp_path_factory, "pool")
    dkls = {k.party_id: k for k in dkls_local.run_dkg(3, 2)}
    frost = {k.party_id: k for k in frost_local.run_dkg(3, 2, FROST_ED25519)}
    built, closers = {}, []
    for i in (1, 2, 3):
        tls = TlsCredentials.from_bundle(made.party_dir(i))
        gate = Gate(i, roster.identity_keys())
        server = PeerServer.from_roster(roster, i, gate, tls).start()
        client = PeerClient.from_roster(roster, i, tls, timeout=2.0)
        runner = SessionRunner(i, gate, Outbox(i, sign_with(keys[i])), client.send, RunnerConfig(10.0, 4.0))
        state = PartyState(tmp_path_factory.mktemp(f"state{i}") / "party_state.sqlite")
        built[i] = Party(i, runner, state, {ECDSA: dkls[i], EDDSA: frost[i]})
        closers += [runner.close, client.close, lambda s=server: s.stop(grace=None), state.close]
    yield built
    for close in closers:
        close()


@pytest.fixture(autouse=True)
def _clean(parties):
    for p in parties.values():
        p.pool = p.presigner.pool = PresignPool(64)
        p.version, p.busy = 1, False
        p.presigner._armed.clear()  # noqa: SLF001 - each test arms what it needs
        p.presigner._probed.clear()  # noqa: SLF001
    yield


def job(parties, key_type: str, signers: tuple[int, ...], count: int) -> PresignJob:
    return PresignJob(7, key_type, public(key_type, parties[signers[0]].shares[key_type]), signers, count)


def fill(parties, key_type: str, signers: tuple[int, ...], count: int) -> None:
    """What the controllers do in idle time, round after round until the pools are full (a loaded host
    may miss a join timeout): every member but the leader arms, then the leader fills."""
    for _round in range(10):
        for i in signers[1:]:
            parties[i].presigner.run(job(parties, key_type, signers, count))
        parties[signers[0]].presigner.run(job(parties, key_type, signers, count))
        if len(ids(parties[signers[0]], key_type, signers)) >= count:
            return


def wait_for(predicate, timeout: float = 20.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        done.wait(0.05)
    raise AssertionError("condition not reached")


def ids(party: Party, key_type: str, signers: tuple[int, ...]) -> list[bytes]:
    tag = (public(key_type, party.shares[key_type]), party.version, signers)
    return [e.entry_id for e in party.pool._entries.get(tag, ())]  # noqa: SLF001 - order is the point


def digest_or_message(key_type: str) -> bytes:
    raw = secrets.token_bytes(24)
    return raw if key_type == EDDSA else hashlib.sha256(raw).digest()


def verify(key_type: str, public_key: bytes, data: bytes, signature: bytes) -> None:
    if key_type == EDDSA:
        nacl.signing.VerifyKey(public_key).verify(data, signature)
    else:
        der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(signature))
        assert coincurve.PublicKey(public_key).verify(der, data, hasher=None)


@pytest.mark.parametrize("key_type", [ECDSA, EDDSA])
def test_fill_then_sign_from_the_pool_over_mtls(parties, key_type: str) -> None:
    signers = (1, 2)
    fill(parties, key_type, signers, 3)
    wait_for(lambda: parties[2].pool.count(public(key_type, parties[2].shares[key_type]), 1, signers) == 3)
    assert ids(parties[1], key_type, signers) == ids(parties[2], key_type, signers)  # same order on both
    first = ids(parties[1], key_type, signers)[0]
    hits_before = metrics.POOL_SIGNS.labels(metrics.pool_key_type(key_type), "hit")._value.get()
    data, sid = digest_or_message(key_type), secrets.token_bytes(32)
    out = run_parallel({i: lambda i=i: parties[i].sign(key_type, signers, data, sid) for i in signers})
    assert out[1] == out[2] and out[1][1] == HIT
    verify(key_type, public(key_type, parties[1].shares[key_type]), data, out[1][0])
    for i in signers:  # the oldest entry is gone on both sides, the other two stay
        assert first not in ids(parties[i], key_type, signers) and len(ids(parties[i], key_type, signers)) == 2
    assert metrics.POOL_SIGNS.labels(metrics.pool_key_type(key_type), "hit")._value.get() == hits_before + 2
    sizes = parties[1].pool.sizes()
    assert sizes[metrics.pool_key_type(key_type)] == 2


def test_a_peer_naming_another_entry_burns_both_and_the_full_protocol_signs(parties) -> None:
    """Party 1 lost its oldest entry (as after a fill it did not finish): the two name different entries.
    Both burn every entry named, nobody combines halves of different presignatures, and the same session
    signs with the full protocol."""
    signers = (1, 3)
    fill(parties, ECDSA, signers, 3)
    wait_for(lambda: len(ids(parties[3], ECDSA, signers)) == 3)
    lost, second = ids(parties[1], ECDSA, signers)[:2]
    parties[1].pool.burn(public(ECDSA, parties[1].shares[ECDSA]), {lost})
    data, sid = digest_or_message(ECDSA), secrets.token_bytes(32)
    out = run_parallel({i: lambda i=i: parties[i].sign(ECDSA, signers, data, sid) for i in signers})
    assert out[1][1] == out[3][1] == MISMATCH and out[1][0] == out[3][0]
    verify(ECDSA, public(ECDSA, parties[1].shares[ECDSA]), data, out[1][0])
    for i in signers:  # out of step: both emptied the set's pool, to refill it together
        assert ids(parties[i], ECDSA, signers) == []
    assert lost and second


def test_a_member_that_lost_a_fill_is_back_in_step_after_the_next_fill(parties) -> None:
    """Party 2 lost its newest entry (a fill the leader finished and it did not): the leader's pool is
    full, so only its probe fill runs; in it the members compare newest entries, both empty the set's
    pool and refill it together."""
    signers = (1, 2)
    fill(parties, ECDSA, signers, 2)
    wait_for(lambda: len(ids(parties[2], ECDSA, signers)) == 2)
    newest = ids(parties[2], ECDSA, signers)[-1]
    parties[2].pool.burn(public(ECDSA, parties[2].shares[ECDSA]), {newest})
    fill(parties, ECDSA, signers, 2)
    wait_for(lambda: len(ids(parties[2], ECDSA, signers)) == 2)
    assert ids(parties[1], ECDSA, signers) == ids(parties[2], ECDSA, signers)
    assert newest not in ids(parties[1], ECDSA, signers)


def test_a_member_not_armed_makes_no_entry(parties) -> None:
    """No PresignJob from party 2's controller (busy, or never asked): the leader's fill finds no partner
    at the join timeout and nothing is kept on either side."""
    signers = (1, 2)
    parties[1].presigner.run(job(parties, ECDSA, signers, 2))
    assert ids(parties[1], ECDSA, signers) == [] and ids(parties[2], ECDSA, signers) == []


def test_a_busy_member_joins_no_fill(parties) -> None:
    signers = (2, 3)
    parties[3].presigner.run(job(parties, ECDSA, signers, 2))
    parties[3].busy = True  # a signing session runs there: pools are for idle time
    parties[2].presigner.run(job(parties, ECDSA, signers, 2))
    assert ids(parties[2], ECDSA, signers) == [] and ids(parties[3], ECDSA, signers) == []


def test_a_new_share_version_drops_the_pool(parties) -> None:
    """Refresh or resharing committed (version 2): every entry of version 1 is destroyed and never
    taken; a fill naming the old version is refused by a member at the new one."""
    signers = (1, 2)
    fill(parties, ECDSA, signers, 2)
    wait_for(lambda: len(ids(parties[2], ECDSA, signers)) == 2)
    pk = public(ECDSA, parties[1].shares[ECDSA])
    parties[2].version = 2
    assert parties[2].pool.take(pk, 2, signers) is None
    assert parties[2].pool.count(pk, 1, signers) == 0 and parties[2].pool.size() == 0
    parties[2].presigner.run(job(parties, ECDSA, signers, 2))  # armed at version 2
    parties[1].presigner.run(job(parties, ECDSA, signers, 4))  # leader still at version 1
    assert parties[2].pool.size() == 0


def test_a_peer_that_goes_away_takes_its_sets_pools_with_it(parties) -> None:
    """A peer no longer live may return restarted (empty pool): every entry shared with it is dropped
    at once (the daemon calls drop_peer from its liveness view), entries of other sets stay."""
    fill(parties, ECDSA, (1, 2), 1)
    fill(parties, ECDSA, (1, 3), 1)
    wait_for(lambda: len(ids(parties[3], ECDSA, (1, 3))) == 1 and len(ids(parties[2], ECDSA, (1, 2))) == 1)
    assert parties[1].pool.drop_peer(2) == 1
    assert ids(parties[1], ECDSA, (1, 2)) == [] and len(ids(parties[1], ECDSA, (1, 3))) == 1


def test_a_fill_id_never_runs_twice(parties) -> None:
    """The fill's entry id is claimed durably before its first message: the same nonce again (a
    replaying leader, or a restart) is refused."""
    share = parties[1].shares[ECDSA]
    nonce = secrets.token_bytes(32)
    first = FillSession(KEYRING, ECDSA, share, 1, (1, 2), nonce, secrets.token_bytes)
    assert parties[1].presigner.state.claim_session(first.entry_id, "presign")
    assert not parties[1].presigner._fill_once(ECDSA, share, 1, (1, 2), nonce, keep=2)  # noqa: SLF001
    assert parties[1].pool.size() == 0


def test_pools_off_refuses_presign_jobs(parties) -> None:
    p = parties[1]
    p.presigner.pool = PresignPool(0)
    with pytest.raises(JobFailed, match="pools are off"):
        p.presigner.run(job(parties, ECDSA, (1, 2), 2))
