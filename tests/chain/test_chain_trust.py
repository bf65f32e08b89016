"""Chain trust against real node processes and a real man in the middle (tests/chain/proxy.py).

The party's chain check (`check_on_chain`) is run here with the readers the daemon builds: a client
pinned by TLS, and the k-of-m AgreeingReader. A proxy on loopback invents a PENDING signature request
for a real key, or changes a real request's data. Each attack is first shown to work against the
reader it defeats when the protection is off, so the test would fail without the protection.
"""

from __future__ import annotations

import pytest

from appliance.mpc_party.jobs import KeyCache, RequestRefused, check_on_chain
from appliance.mpc_party.local_api import SignJob
from chain_client.agreement import AgreeingReader
from chain_client.client import ChainClient, ClientConfig
from chain_client.errors import ChainDisagreement, ChainUnavailable
from chain_client.proto_gen.zrchain.treasury import mpcsign_pb2
from chain_client.proto_gen.zrchain.treasury import query_pb2 as treasury_query
from chain_node.genesis import Genesis, Params
from chain_node.local import LocalNode, free_port, make_dev_tls
from tests.chain.conftest import CHAIN_ID, digest
from tests.chain.proxy import ChainProxy
from tests.chain.test_keeper_rules import new_key

SIGN_BY_ID = "/zrchain.treasury.Query/SignatureRequestByID"
ATTACKER_DATA = digest("pay the attacker")
INJECTED_ID = 777_000


def injector(keyring: str, key_id: int):
    """Tamper: answer "SignatureRequestByID 777000" with a PENDING request for the real key."""

    def tamper(method: str, request: bytes, answer: bytes | None) -> bytes | None:
        if method != SIGN_BY_ID:
            return None
        asked = treasury_query.QuerySignatureRequestByIDRequest.FromString(request)
        if asked.id != INJECTED_ID:
            return None
        fake = mpcsign_pb2.SignReqResponse(id=INJECTED_ID, creator="zen1attacker", key_ids=[key_id],
                                           key_type="KEY_TYPE_ECDSA_SECP256K1", data_for_signing=[ATTACKER_DATA],
                                           status="SIGN_REQUEST_STATUS_PENDING")
        return treasury_query.QuerySignatureRequestByIDResponse(sign_request=fake).SerializeToString()

    return tamper


def alterer(request_id: int):
    """Tamper: the real signature request `request_id`, with the attacker's digest to sign."""

    def tamper(method: str, request: bytes, answer: bytes | None) -> bytes | None:
        if method != SIGN_BY_ID or answer is None:
            return None
        response = treasury_query.QuerySignatureRequestByIDResponse.FromString(answer)
        if response.sign_request.id != request_id:
            return None
        del response.sign_request.data_for_signing[:]
        response.sign_request.data_for_signing.append(ATTACKER_DATA)
        return response.SerializeToString()

    return tamper


def job_for(request_id: int, key_id: int, public_key: bytes, data: bytes) -> SignJob:
    return SignJob(request_id, "KEY_TYPE_ECDSA_SECP256K1", key_id, public_key, data, (1,))


@pytest.fixture(scope="module")
def signed(world):
    """A keyring with a real ECDSA key and a real open signature request for it."""
    keyring = world.keyring()
    key_id, private = new_key(world, keyring)
    request_id = world.sign_request(key_id, [digest("honest payment")], mpc_btl=100_000)  # open all module long
    return keyring, key_id, private.public_key.format(), request_id


def client(endpoint: str, **overrides) -> ChainClient:
    return ChainClient(ClientConfig(endpoints=[endpoint], chain_id=CHAIN_ID, attempts=1, **overrides))


# --- the dev node serves TLS; the client pins it ----------------------------------------------------

@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls-node")
    tls = make_dev_tls(directory / "tls")
    node = LocalNode(directory, Genesis(CHAIN_ID, Params(), []), tls=tls)
    node.start()
    yield node
    node.stop()


def test_node_serves_tls_to_a_client_pinning_its_ca_only(tls_node, tmp_path) -> None:
    ca = tls_node.tls.ca_pem()
    with client(tls_node.endpoint, tls_ca_pem=ca) as pinned:
        assert pinned.latest_block()[0] == CHAIN_ID
    with client(tls_node.endpoint, tls_ca_pem=tls_node.tls.cert.read_bytes()) as leaf_pinned:
        assert leaf_pinned.latest_height() >= 0  # pinning the node's own certificate works too
    other_ca = make_dev_tls(tmp_path / "other").ca_pem()
    for wrong in ({"tls_ca_pem": other_ca}, {"tls_ca_pem": ca, "tls_server_name": "node.elsewhere.example"},
                  {}):  # another CA, a name the certificate does not carry, plaintext
        with client(tls_node.endpoint, **wrong) as refused, pytest.raises(ChainUnavailable):
            refused.latest_height()


def test_node_reports_the_height_of_every_answer(world, signed) -> None:
    _, _, _, request_id = signed
    found, height = world.client.sign_request_at(request_id)
    assert found.id == request_id and height is not None and height <= world.client.latest_height()
    missing, height = world.client.sign_request_at(INJECTED_ID)
    assert missing is None and height is not None  # a NOT_FOUND answer carries its height too


def test_tls_pinned_party_cannot_be_fed_an_injected_request(tmp_path, signed) -> None:
    keyring, key_id, public_key, _ = signed
    directory = tmp_path / "node"
    node_tls, attacker_tls = make_dev_tls(directory / "tls"), make_dev_tls(tmp_path / "attacker")
    world_genesis = Genesis(CHAIN_ID, Params(), [])
    node = LocalNode(directory, world_genesis, tls=node_tls)
    node.start()
    proxy = ChainProxy(node.endpoint, injector(keyring, key_id), upstream_ca=node_tls.ca_pem(),
                       serve_tls=attacker_tls).start()
    job = job_for(INJECTED_ID, key_id, public_key, ATTACKER_DATA)
    try:
        # Control: a client that trusted whatever certificate the path offers would accept the request.
        with client(proxy.endpoint, tls_ca_pem=attacker_tls.ca_pem()) as fooled:
            assert fooled.sign_request(INJECTED_ID).data_for_signing == [ATTACKER_DATA]
        forwarded = len(proxy.calls)
        # The party pins the node's CA: the handshake with the proxy fails, nothing is answered.
        with client(proxy.endpoint, tls_ca_pem=node_tls.ca_pem()) as pinned:
            with pytest.raises(RequestRefused, match="chain unreachable"):
                check_on_chain(job, pinned, keyring)
        assert len(proxy.calls) == forwarded  # no query of the pinned client reached the man in the middle
    finally:
        proxy.stop()
        node.stop()


# --- k of m endpoints must agree ---------------------------------------------------------------------

def agreeing(endpoints: list[str], k: int, seen: list, wait_s: float = 0.5) -> AgreeingReader:
    return AgreeingReader([client(e) for e in endpoints], k, wait_s=wait_s, poll_s=0.1,
                          on_disagreement=lambda query, error: seen.append((query, error)))


def test_injected_request_is_refused_with_two_of_two(world, signed) -> None:
    keyring, key_id, public_key, _ = signed
    proxy = ChainProxy(world.node.endpoint, injector(keyring, key_id)).start()
    job = job_for(INJECTED_ID, key_id, public_key, ATTACKER_DATA)
    seen: list = []
    try:
        with client(proxy.endpoint) as through_proxy:  # control: one plaintext endpoint is fooled
            check_on_chain(job, through_proxy, keyring)
        reader = agreeing([world.node.endpoint, proxy.endpoint], 2, seen)
        with pytest.raises(RequestRefused) as refused:
            check_on_chain(job, reader, keyring)
        reader.close()
    finally:
        proxy.stop()
    message = str(refused.value)
    assert world.node.endpoint in message and proxy.endpoint in message
    assert "differing: existence" in message and "absent" in message
    assert [query for query, _ in seen] == ["sign_request"] and not seen[0][1].decided


def test_altered_data_is_refused_and_outvoted_alteration_is_reported(world, signed) -> None:
    keyring, key_id, public_key, request_id = signed
    proxy = ChainProxy(world.node.endpoint, alterer(request_id)).start()
    honest = ChainProxy(world.node.endpoint, lambda *_: None).start()  # a second, honest route
    seen: list = []
    try:
        attacker_job = job_for(request_id, key_id, public_key, ATTACKER_DATA)
        with client(proxy.endpoint) as through_proxy:  # control: the altered data passes one endpoint
            check_on_chain(attacker_job, through_proxy, keyring)
        reader = agreeing([world.node.endpoint, proxy.endpoint], 2, seen)
        with pytest.raises(RequestRefused, match="differing: data_for_signing") as refused:
            check_on_chain(attacker_job, reader, keyring)
        assert proxy.endpoint in str(refused.value) and world.node.endpoint in str(refused.value)
        reader.close()
        # 2 of 3: the two honest endpoints carry the real request; the lie is still reported.
        reader = agreeing([world.node.endpoint, honest.endpoint, proxy.endpoint], 2, seen)
        check_on_chain(job_for(request_id, key_id, public_key, digest("honest payment")), reader, keyring)
        with pytest.raises(RequestRefused, match="holds different data"):
            check_on_chain(attacker_job, reader, keyring)
        reader.close()
    finally:
        proxy.stop()
        honest.stop()
    assert [error.decided for _, error in seen] == [False, True, True]


class _Counting:
    """A reader that counts the queries reaching the chain."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append(name)
            return getattr(self.inner, name)(*args)
        return call


def test_key_cache_reads_a_key_once_and_requests_every_time(world, signed) -> None:
    """A key's public key and keyring never change on chain: one agreed read serves every later job.
    Requests are read afresh each job, so altered data is still refused; unknown keys are not cached."""
    keyring, key_id, public_key, request_id = signed
    counting = _Counting(world.client)
    cache = KeyCache(counting)
    job = job_for(request_id, key_id, public_key, digest("honest payment"))
    for _ in range(3):
        check_on_chain(job, cache, keyring)
    assert counting.calls.count("key") == 1 and counting.calls.count("sign_request") == 3
    with pytest.raises(RequestRefused, match="holds different data"):
        check_on_chain(job_for(request_id, key_id, public_key, ATTACKER_DATA), cache, keyring)
    assert cache.key(10**9) is None and cache.key(10**9) is None
    assert counting.calls.count("key") == 3


def test_fewer_than_k_answering_is_refused(world, signed) -> None:
    keyring, key_id, public_key, request_id = signed
    dead = f"127.0.0.1:{free_port()}"
    seen: list = []
    reader = agreeing([world.node.endpoint, dead], 2, seen, wait_s=0.2)
    with pytest.raises(ChainDisagreement, match="only 1 of 2 chain endpoints answered") as refused:
        reader.sign_request(request_id)
    reader.close()
    assert dead in str(refused.value) and "no answer" in str(refused.value)


def test_agreeing_reader_rejects_bad_set_up(world) -> None:
    with pytest.raises(ValueError, match="agree"):
        AgreeingReader([client(world.node.endpoint)], 2)
    two = ChainClient(ClientConfig(endpoints=[world.node.endpoint, "127.0.0.1:1"]))
    with pytest.raises(ValueError, match="exactly one endpoint"):
        AgreeingReader([two], 1)


def test_chain_cli_reaches_a_tls_node_with_tls_ca(tls_node, capsys) -> None:
    from chain_node.cli import main

    base = ["show", "keyring", "keyring1nothing", "--node", tls_node.endpoint]
    assert main([*base, "--tls-ca", str(tls_node.tls.ca)]) == 1
    assert "keyring keyring1nothing not found" in capsys.readouterr().err  # the node answered over TLS
    assert main(base) == 1
    assert "no chain node answered" in capsys.readouterr().err  # plaintext to a TLS node gets nothing
