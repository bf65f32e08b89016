"""Chain node throughput through chain_client, against a node process on this machine.

chain.txs_per_s       signed txs broadcast (SYNC), included in blocks and confirmed by GetTx, per second
chain.requests_per_s  sign requests created by an owner and fulfilled by a keyring party, per second
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import Result
from chain_client.client import ChainClient, ClientConfig, msg_responses
from chain_client.crypto import SoftwareSigner
from chain_client.messages import fulfil_key_request, fulfil_sign_request
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.proto_gen.zrchain.treasury import tx_pb2 as treasury_tx
from chain_node.genesis import Genesis, GenesisAccount, Params
from chain_node.local import LocalNode

CHAIN_ID = "zrbench-1"
TX_COUNT = 1200
SENDERS = 4
REQUEST_ROUNDS = 8
REQUESTS_PER_ROUND = 50
BLOCK_TIME = 0.1


def _config(endpoint: str, **overrides) -> ClientConfig:
    config = ClientConfig(endpoints=[endpoint], chain_id=CHAIN_ID, poll_interval_s=0.02)
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def _txs_per_s(client: ChainClient, senders: list[SoftwareSigner]) -> float:
    """Each sender broadcasts its share back to back (own thread), then every tx is confirmed by GetTx."""
    per_sender = TX_COUNT // len(senders)

    def broadcast_all(signer: SoftwareSigner) -> list[str]:
        msg = identity_tx.MsgNewWorkspace(creator=signer.address())
        return [client.broadcast(signer, [msg], memo=str(i)) for i in range(per_sender)]

    def confirm(hashes: list[str]) -> None:
        for txhash in hashes:
            client.wait_for_tx(txhash)

    with ThreadPoolExecutor(len(senders)) as pool:
        for signer in senders:  # warm up: load account numbers, open the channel
            client.send(signer, [identity_tx.MsgNewWorkspace(creator=signer.address())])
        start = time.perf_counter()
        batches = list(pool.map(broadcast_all, senders))
        list(pool.map(confirm, batches))
        elapsed = time.perf_counter() - start
    return per_sender * len(senders) / elapsed


def _requests_per_s(client: ChainClient, owner: SoftwareSigner, party: SoftwareSigner) -> float:
    """Owner asks for REQUESTS_PER_ROUND signatures per tx; the party signs what it finds PENDING."""
    workspace = msg_responses(
        client.send(owner, [identity_tx.MsgNewWorkspace(creator=owner.address())]),
        [identity_tx.MsgNewWorkspaceResponse],
    )[0].addr
    keyring = msg_responses(
        client.send(owner, [identity_tx.MsgNewKeyring(creator=owner.address(), party_threshold=1)]),
        [identity_tx.MsgNewKeyringResponse],
    )[0].addr
    add = identity_tx.MsgAddKeyringParty(creator=owner.address(), keyring_addr=keyring, party=party.address())
    client.send(owner, [add])
    mpc_key = SoftwareSigner()  # stands in for the MPC key: one software key signs what the keyring would
    request = treasury_tx.MsgNewKeyRequest(
        creator=owner.address(), workspace_addr=workspace, keyring_addr=keyring, key_type="ecdsa"
    )
    created = msg_responses(client.send(owner, [request]), [treasury_tx.MsgNewKeyRequestResponse])[0]
    client.send(party, [fulfil_key_request(party, created.key_req_id, mpc_key.public_key())])
    (key,) = client.keys(workspace)
    fulfilled = 0
    start = time.perf_counter()
    for round_ in range(REQUEST_ROUNDS):
        digests = [bytes([round_, i]) * 16 for i in range(REQUESTS_PER_ROUND)]
        asks = [
            treasury_tx.MsgNewSignatureRequest(
                creator=owner.address(), key_ids=[key.id], data_for_signing=d.hex()
            )
            for d in digests
        ]
        client.send(owner, asks)
        pending = client.sign_requests(keyring, "SIGN_REQUEST_STATUS_PENDING", page_limit=200)
        answers = [
            fulfil_sign_request(party, r.id, mpc_key.sign_digest(r.data_for_signing[0])) for r in pending
        ]
        client.send(party, answers)
        fulfilled += len(answers)
    elapsed = time.perf_counter() - start
    done = client.sign_requests(keyring, "SIGN_REQUEST_STATUS_FULFILLED", page_limit=500)
    if len(done) != fulfilled or fulfilled != REQUEST_ROUNDS * REQUESTS_PER_ROUND:
        raise RuntimeError("not every sign request ended FULFILLED")
    return fulfilled / elapsed


def run() -> list[Result]:
    signers = [SoftwareSigner() for _ in range(SENDERS + 2)]
    genesis = Genesis(
        chain_id=CHAIN_ID,
        params=Params(default_btl=1000),
        accounts=[GenesisAccount(s.address(), 10**16) for s in signers],
    )
    with tempfile.TemporaryDirectory(prefix="zrbench-chain-") as tmp:
        node = LocalNode(Path(tmp), genesis, block_time=BLOCK_TIME)
        node.start()
        try:
            with ChainClient(_config(node.endpoint)) as client:
                txs = _txs_per_s(client, signers[:SENDERS])
            big = _config(node.endpoint, gas_limit=3_000_000, fee_amount=7_500_000)
            with ChainClient(big) as client:
                requests = _requests_per_s(client, signers[SENDERS], signers[SENDERS + 1])
        finally:
            node.stop()
    note = f"node process, block time {BLOCK_TIME} s, 2-core machine"
    return [
        Result(
            "chain.txs_per_s", round(txs, 1), "1/s", note=f"{TX_COUNT} txs from {SENDERS} senders; {note}"
        ),
        Result(
            "chain.requests_per_s",
            round(requests, 1),
            "1/s",
            note=f"{REQUEST_ROUNDS}x{REQUESTS_PER_ROUND} ECDSA sign requests, created and fulfilled; {note}",
        ),
    ]


if __name__ == "__main__":
    for result in run():
        print(result.as_dict())
