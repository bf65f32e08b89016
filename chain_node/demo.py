"""Demo step: a local chain node, a workspace and a 2-of-2 keyring, one key request answered by both parties.

Software keys stand in for the HSM chain keys and for the MPC key here; the point is the chain side:
real signed transactions, the keeper's PARTIAL -> FULFILLED rule, and a signature request on the key.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from chain_client.client import ChainClient, ClientConfig, msg_responses
from chain_client.crypto import SoftwareSigner, verify_digest
from chain_client.messages import fulfil_key_request, fulfil_sign_request
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.proto_gen.zrchain.treasury import tx_pb2 as treasury_tx
from chain_node.genesis import Genesis, GenesisAccount, Params
from chain_node.local import LocalNode

CHAIN_ID = "zrkeyring-demo-1"


def _run(client: ChainClient, owner: SoftwareSigner, parties: list[SoftwareSigner]) -> list[str]:
    lines = []
    me = owner.address()
    response = client.send(owner, [identity_tx.MsgNewWorkspace(creator=me)])
    workspace = msg_responses(response, [identity_tx.MsgNewWorkspaceResponse])[0].addr
    lines.append(f"workspace {workspace} created in block {response.height}")
    response = client.send(
        owner, [identity_tx.MsgNewKeyring(creator=me, description="demo", party_threshold=2)]
    )
    keyring = msg_responses(response, [identity_tx.MsgNewKeyringResponse])[0].addr
    client.send(owner, [identity_tx.MsgAddKeyringParty(creator=me, keyring_addr=keyring, party=p.address())
                        for p in parties])  # fmt: skip
    lines.append(f"keyring {keyring}: parties {', '.join(p.address() for p in parties)}, threshold 2")
    request = treasury_tx.MsgNewKeyRequest(
        creator=me, workspace_addr=workspace, keyring_addr=keyring, key_type="ecdsa"
    )
    response = client.send(owner, [request])
    request_id = msg_responses(response, [treasury_tx.MsgNewKeyRequestResponse])[0].key_req_id
    lines.append(f"key request {request_id} created (ECDSA)")
    mpc_key = SoftwareSigner()  # the demo's stand-in for the threshold key the parties would compute
    for party in parties:
        client.send(party, [fulfil_key_request(party, request_id, mpc_key.public_key())])
        status = client.key_request(request_id).status
        lines.append(f"party {party.address()} answered: request {request_id} is {status}")
    (key,) = client.keys(workspace)
    lines.append(f"key {key.id}: {key.public_key.hex()}")
    digest = hashlib.sha256(b"zrkeyring demo transaction").digest()
    ask = treasury_tx.MsgNewSignatureRequest(creator=me, key_ids=[key.id], data_for_signing=digest.hex())
    sign_id = msg_responses(client.send(owner, [ask]), [treasury_tx.MsgNewSignatureRequestResponse])[
        0
    ].sig_req_id
    signature = mpc_key.sign_digest(digest)
    for party in parties:
        client.send(party, [fulfil_sign_request(party, sign_id, signature)])
    found = client.sign_request(sign_id)
    if found.status != "SIGN_REQUEST_STATUS_FULFILLED" or not verify_digest(
        key.public_key, digest, found.signed_data[0].signed_data
    ):
        raise RuntimeError(f"sign request {sign_id} ended {found.status}")
    lines.append(f"sign request {sign_id} FULFILLED; signature verifies against key {key.id}")
    return lines


def demo_step() -> list[str]:
    owner, parties = SoftwareSigner(), [SoftwareSigner(), SoftwareSigner()]
    genesis = Genesis(
        chain_id=CHAIN_ID,
        params=Params(default_btl=50),
        accounts=[GenesisAccount(s.address(), 10**15) for s in [owner, *parties]],
    )
    with tempfile.TemporaryDirectory(prefix="zrkeyring-chain-demo-") as tmp:
        node = LocalNode(Path(tmp), genesis, block_time=0.2)
        node.start()
        lines = [f"chain node {CHAIN_ID} started on {node.endpoint} (block time 0.2 s)"]
        try:
            config = ClientConfig(
                endpoints=[node.endpoint], chain_id=CHAIN_ID, simulate=True, poll_interval_s=0.05
            )
            with ChainClient(config) as client:
                lines += _run(client, owner, parties)
        finally:
            node.stop()
        lines.append("chain node stopped")
    return lines


if __name__ == "__main__":
    print("\n".join(demo_step()))
