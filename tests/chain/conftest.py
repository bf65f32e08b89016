"""Fixtures for the chain tests: a real node process on a free 127.0.0.1 port, and a funded world.

One node per test module (block time 0.1 s) keeps the suite quick; tests create their own keyrings
so they do not depend on each other's state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from chain_client.client import ChainClient, ClientConfig, event_values, msg_responses
from chain_client.crypto import SoftwareSigner
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.proto_gen.zrchain.treasury import tx_pb2 as treasury_tx
from chain_node.genesis import Genesis, GenesisAccount, Params
from chain_node.local import LocalNode

CHAIN_ID = "zrtest-1"
BALANCE = 10**15


def verify_ecdsa(public_key: bytes, digest: bytes, signature: bytes) -> None:
    """Check a secp256k1 r||s signature with pyca/cryptography (not the library that made it)."""
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"))
    key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def ecdsa_valid(public_key: bytes, digest: bytes, signature: bytes) -> bool:
    try:
        verify_ecdsa(public_key, digest, signature)
        return True
    except InvalidSignature:
        return False


@dataclass
class World:
    """A running node plus funded software keys: an owner, five parties and a poor account."""

    node: LocalNode
    client: ChainClient
    owner: SoftwareSigner
    parties: list[SoftwareSigner]
    poor: SoftwareSigner
    workspace: str = ""
    extra: dict = field(default_factory=dict)

    def new_client(self, **overrides) -> ChainClient:
        config = ClientConfig(endpoints=[self.node.endpoint], chain_id=CHAIN_ID, poll_interval_s=0.03)
        for name, value in overrides.items():
            setattr(config, name, value)
        return ChainClient(config)

    def keyring(
        self, parties: int = 1, threshold: int = 1, key_req_fee: int = 0, sig_req_fee: int = 0
    ) -> str:
        """A fresh keyring with the first `parties` party keys; one tx for all of it."""
        response = self.client.send(
            self.owner,
            [
                identity_tx.MsgNewKeyring(
                    creator=self.owner.address(),
                    description="test",
                    party_threshold=threshold,
                    key_req_fee=key_req_fee,
                    sig_req_fee=sig_req_fee,
                )
            ],
        )
        (created,) = msg_responses(response, [identity_tx.MsgNewKeyringResponse])
        adds = [
            identity_tx.MsgAddKeyringParty(
                creator=self.owner.address(), keyring_addr=created.addr, party=p.address()
            )
            for p in self.parties[:parties]
        ]
        if adds:
            self.client.send(self.owner, adds)
        return created.addr

    def key_requests(
        self, keyring: str, count: int = 1, key_type: str = "ecdsa", mpc_btl: int = 0
    ) -> list[int]:
        msgs = [
            treasury_tx.MsgNewKeyRequest(
                creator=self.owner.address(),
                workspace_addr=self.workspace,
                keyring_addr=keyring,
                key_type=key_type,
                mpc_btl=mpc_btl,
            )
            for _ in range(count)
        ]
        response = self.client.send(self.owner, msgs)
        return [int(v) for v in event_values(response, "new_key_request", "request_id")]

    def sign_request(self, key_id: int, data: list[bytes], mpc_btl: int = 0) -> int:
        msg = treasury_tx.MsgNewSignatureRequest(
            creator=self.owner.address(),
            key_ids=[key_id],
            data_for_signing=",".join(d.hex() for d in data),
            mpc_btl=mpc_btl,
        )
        response = self.client.send(self.owner, [msg])
        (created,) = msg_responses(response, [treasury_tx.MsgNewSignatureRequestResponse])
        return created.sig_req_id


def make_world(
    tmp: Path, block_time: float = 0.1, default_btl: int = 20, dev_chain_requests: bool = False
) -> World:
    owner, poor = SoftwareSigner(), SoftwareSigner()
    parties = [SoftwareSigner() for _ in range(5)]
    accounts = [GenesisAccount(s.address(), BALANCE) for s in [owner, *parties]]
    accounts.append(GenesisAccount(poor.address(), 1000))
    params = Params(default_btl=default_btl, dev_chain_requests=dev_chain_requests)
    genesis = Genesis(chain_id=CHAIN_ID, params=params, accounts=accounts)
    node = LocalNode(tmp, genesis, block_time=block_time)
    node.start()
    client = ChainClient(ClientConfig(endpoints=[node.endpoint], chain_id=CHAIN_ID, poll_interval_s=0.03))
    world = World(node=node, client=client, owner=owner, parties=parties, poor=poor)
    response = client.send(owner, [identity_tx.MsgNewWorkspace(creator=owner.address())])
    (created,) = msg_responses(response, [identity_tx.MsgNewWorkspaceResponse])
    world.workspace = created.addr
    return world


def open_world(tmp_path_factory):
    """One node per test module; other test folders reuse it with `pytest.fixture(...)(open_world)`."""
    built = make_world(tmp_path_factory.mktemp("chain"))
    yield built
    built.client.close()
    built.node.stop()


world = pytest.fixture(scope="module", name="world")(open_world)


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()
