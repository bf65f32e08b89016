"""Real party daemons behind a man in the middle on their chain path: no party contributes.

One local keyring (three SoftHSM tokens, three `zrkeyring party run` processes, the dev chain node)
and tests/chain/proxy.py between the parties and the node. The proxy invents a PENDING key request
for the keyring (what a compromised coordinator would then ask every party to run a DKG for):
1. with TLS pinned to the node's CA (the local keyring's default, as in the shipped config) the proxy,
   holding only a certificate of its own, fails the handshake: every party refuses, no session starts;
2. with the node in plaintext, each party reading two loopback endpoints (the node and the injecting
   proxy) with `agree = 2`: every party refuses, the refusal names both endpoints, and the
   disagreement counter on each party's /metrics goes up.
"""

from __future__ import annotations

import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from appliance.local.localnet import LocalKeyring, LocalSettings
from appliance.mpc_party.local_api import JobFailed, KeygenJob, PartyClient
from chain_client.proto_gen.zrchain.treasury import key_pb2
from chain_client.proto_gen.zrchain.treasury import query_pb2 as treasury_query
from chain_node.local import make_dev_tls
from tests.chain.proxy import ChainProxy

KEY_BY_ID = "/zrchain.treasury.Query/KeyRequestByID"
INJECTED_ID = 424_242
CHAIN_TABLE = re.compile(r"\[chain\]\n.*?(?=\n\[metrics\])", re.DOTALL)


def injector(keyring: str):
    def tamper(method: str, request: bytes, answer: bytes | None) -> bytes | None:
        asked = treasury_query.QueryKeyRequestByIDRequest.FromString(request) if method == KEY_BY_ID else None
        if asked is None or asked.id != INJECTED_ID:
            return None
        fake = key_pb2.KeyReqResponse(id=INJECTED_ID, creator="zen1attacker", keyring_addr=keyring,
                                      key_type="KEY_TYPE_ECDSA_SECP256K1", status="KEY_REQUEST_STATUS_PENDING")
        return treasury_query.QueryKeyRequestByIDResponse(key_request=fake).SerializeToString()

    return tamper


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    built = LocalKeyring(tmp_path_factory.mktemp("chain-trust"), LocalSettings()).setup()
    yield built
    built.close()


def set_chain_table(net: LocalKeyring, lines: str) -> None:
    for host in net.hosts:
        path = host.config("party")
        path.write_text(CHAIN_TABLE.sub(lambda _: f"[chain]\nchain_id = \"zrkeyring-local-1\"\n"
                                                  f"keyring = \"{net.keyring}\"\n{lines}", path.read_text()))


def restart_parties(net: LocalKeyring) -> None:
    for host in net.hosts:
        net.stop_role(host.index, "party")
    for host in net.hosts:
        net.start_role(host.index, "party")
    for host in net.hosts:
        net.wait_party_ready(host.index)


def ask_every_party(net: LocalKeyring) -> list[str]:
    """Send the injected request's keygen job to every party at once; each answer's error text."""
    job = KeygenJob(INJECTED_ID, "KEY_TYPE_ECDSA_SECP256K1", (1, 2, 3), 2)

    def ask(host) -> str:
        client = PartyClient(host.socket)
        try:
            client.run(job, timeout=60)
        except JobFailed as exc:
            return str(exc)
        finally:
            client.close()
        return "CONTRIBUTED"

    with ThreadPoolExecutor(len(net.hosts)) as pool:
        return list(pool.map(ask, net.hosts))


def sessions_run(net: LocalKeyring) -> list[int]:
    out = []
    for host in net.hosts:
        client = PartyClient(host.socket)
        try:
            out.append(client.status(timeout=5)["sessions"])
        finally:
            client.close()
    return out


def metric(net: LocalKeyring, host, name: str) -> str:
    address = re.search(r'\[metrics\]\naddress = "([^"]+)"', host.config("party").read_text()).group(1)
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        return "\n".join(line for line in response.read().decode().splitlines() if line.startswith(name))


def test_tls_pinned_parties_refuse_what_a_proxy_injects(net, tmp_path) -> None:
    node = net.node
    assert node.tls is not None  # the local keyring's chain is TLS by default
    proxy = ChainProxy(node.endpoint, injector(net.keyring), upstream_ca=node.tls.ca_pem(),
                       serve_tls=make_dev_tls(tmp_path / "attacker")).start()
    try:
        set_chain_table(net, f'endpoints = ["{proxy.endpoint}"]\ntls_ca = "{node.tls.ca}"\n')
        restart_parties(net)
        answers = ask_every_party(net)
        assert all(a.startswith("refused: chain unreachable") for a in answers), answers
        assert proxy.tampered == []  # not one query got through the handshake to be answered
        assert sessions_run(net) == [0, 0, 0]
    finally:
        proxy.stop()


def test_two_of_two_agreement_refuses_and_names_the_endpoints(net) -> None:
    node = net.node
    for host in net.hosts:
        net.stop_role(host.index, "party")
    node.stop()
    node.tls = None  # the same chain, now plaintext: the proxy can read and rewrite it
    node.start()
    proxy = ChainProxy(node.endpoint, injector(net.keyring)).start()
    try:
        set_chain_table(net, f'endpoints = ["{node.endpoint}", "{proxy.endpoint}"]\n'
                             "plaintext_loopback_ok = true\nagree = 2\nagree_wait_s = 1.0\n")
        restart_parties(net)
        answers = ask_every_party(net)
        for answer in answers:
            assert answer.startswith("refused: no agreed chain answer: key request 424242"), answer
            assert node.endpoint in answer and proxy.endpoint in answer and "differing: existence" in answer
        assert len(proxy.tampered) >= 3  # the injection was served to every party, and outvoted
        assert sessions_run(net) == [0, 0, 0]
        for host in net.hosts:
            assert 'query="key_request",refused="true"} 1.0' in metric(
                net, host, "zrkeyring_party_chain_disagreements_total")
            assert "plaintext gRPC to chain endpoint" in host.log("party").read_text()
    finally:
        proxy.stop()
