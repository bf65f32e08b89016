"""identity module: workspaces and keyrings (what the treasury checks requests against)."""

from __future__ import annotations

from google.protobuf.message import Message

from chain_client.proto_gen.zrchain.identity import tx_pb2
from chain_client.proto_gen.zrchain.identity.identity_pb2 import Keyring, Workspace
from chain_node.context import Context, check_account_address, derived_address
from chain_node.errors import identity_error


def new_workspace(ctx: Context, msg: tx_pb2.MsgNewWorkspace) -> Message:
    for owner in msg.additional_owners:
        check_account_address(owner, "owner")
    address = derived_address("workspace", ctx.store.next_id("workspace"))
    owners = [msg.creator, *(o for o in dict.fromkeys(msg.additional_owners) if o != msg.creator)]
    workspace = Workspace(
        address=address,
        creator=msg.creator,
        owners=owners,
        admin_policy_id=msg.admin_policy_id,
        sign_policy_id=msg.sign_policy_id,
    )
    ctx.store.set("workspace", address, workspace)
    ctx.emit("new_workspace", workspace_addr=address)
    return tx_pb2.MsgNewWorkspaceResponse(addr=address)


def new_keyring(ctx: Context, msg: tx_pb2.MsgNewKeyring) -> Message:
    address = derived_address("keyring", ctx.store.next_id("keyring"))
    keyring = Keyring(
        address=address,
        creator=msg.creator,
        description=msg.description,
        admins=[msg.creator],
        party_threshold=msg.party_threshold,
        key_req_fee=msg.key_req_fee,
        sig_req_fee=msg.sig_req_fee,
        is_active=True,
        delegate_fees=msg.delegate_fees,
    )
    ctx.store.set("keyring", address, keyring)
    ctx.emit("new_keyring", keyring_addr=address)
    return tx_pb2.MsgNewKeyringResponse(addr=address)


def _admin_keyring(ctx: Context, creator: str, keyring_addr: str) -> Keyring:
    keyring = ctx.store.get("keyring", keyring_addr)
    if keyring is None:
        raise identity_error(f"keyring {keyring_addr} not found")
    if creator not in keyring.admins:
        raise identity_error(f"{creator} is not an admin of keyring {keyring_addr}")
    return keyring


def add_keyring_party(ctx: Context, msg: tx_pb2.MsgAddKeyringParty) -> Message:
    keyring = _admin_keyring(ctx, msg.creator, msg.keyring_addr)
    check_account_address(msg.party, "party")
    if msg.party in keyring.parties:
        raise identity_error(f"party {msg.party} is already a party of keyring {msg.keyring_addr}")
    keyring.parties.append(msg.party)
    if msg.increase_threshold:  # a uint32 in Go: it wraps, and 0 then becomes 1 (identity AddKeyringParty)
        keyring.party_threshold = (keyring.party_threshold + 1) % 2**32
    keyring.party_threshold = max(1, keyring.party_threshold)
    ctx.store.set("keyring", keyring.address, keyring)
    ctx.emit("add_keyring_party", keyring_addr=keyring.address, party=msg.party)
    return tx_pb2.MsgAddKeyringPartyResponse()


def update_keyring(ctx: Context, msg: tx_pb2.MsgUpdateKeyring) -> Message:
    keyring = _admin_keyring(ctx, msg.creator, msg.keyring_addr)
    # As identity UpdateKeyring: a threshold of 0 or above the party count is silently kept as it was.
    if 0 < msg.party_threshold <= len(keyring.parties):
        keyring.party_threshold = msg.party_threshold
    keyring.description = msg.description  # upstream sets all four fields, empty or not
    keyring.key_req_fee = msg.key_req_fee
    keyring.sig_req_fee = msg.sig_req_fee
    keyring.is_active = msg.is_active
    ctx.store.set("keyring", keyring.address, keyring)
    ctx.emit("update_keyring", keyring_addr=keyring.address)
    return tx_pb2.MsgUpdateKeyringResponse()


HANDLERS = {
    tx_pb2.MsgNewWorkspace: new_workspace,
    tx_pb2.MsgNewKeyring: new_keyring,
    tx_pb2.MsgAddKeyringParty: add_keyring_party,
    tx_pb2.MsgUpdateKeyring: update_keyring,
}
