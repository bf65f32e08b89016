"""identity module: workspaces and keyrings (what the treasury checks requests against)."""

from __future__ import annotations

from google.protobuf.message import Message

from chain_client.proto_gen.zrchain.identity import tx_pb2
from chain_client.proto_gen.zrchain.identity.identity_pb2 import Keyring, Workspace
from chain_node.context import Context, check_account_address, derived_address
from chain_node.errors import (
    IDENTITY_INACTIVE,
    IDENTITY_INVALID_ARGUMENT,
    IDENTITY_NOT_FOUND,
    identity_error,
)


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


def add_keyring_party(ctx: Context, msg: tx_pb2.MsgAddKeyringParty) -> Message:
    """AddKeyringParty as upstream: keyring exists and is active, the party is new, then the creator
    must be an admin (in that order); `increase_threshold` wraps a uint32 and a 0 threshold becomes 1."""
    keyring = _active_keyring(ctx, msg.keyring_addr)
    if msg.party in keyring.parties:
        raise identity_error(f"party {msg.party} is already a party of the keyring {msg.keyring_addr}",
                             IDENTITY_INVALID_ARGUMENT)
    _require_admin(keyring, msg.creator)
    check_account_address(msg.party, "party")
    keyring.parties.append(msg.party)
    if msg.increase_threshold:
        keyring.party_threshold = (keyring.party_threshold + 1) % 2**32
    keyring.party_threshold = max(1, keyring.party_threshold)
    ctx.store.set("keyring", keyring.address, keyring)
    ctx.emit("add_keyring_party", keyring_addr=keyring.address, party=msg.party)
    return tx_pb2.MsgAddKeyringPartyResponse()


def update_keyring(ctx: Context, msg: tx_pb2.MsgUpdateKeyring) -> Message:
    """UpdateKeyring as upstream: any admin, active or not (so it also reactivates); fees, activity and
    description are set from the message; a threshold of 0 or above the party count is kept as it was."""
    keyring = _stored_keyring(ctx, msg.keyring_addr)
    if msg.creator not in keyring.admins:
        raise identity_error(f"keyring updates must be performed by an admin - {msg.creator} is not a keyring admin",
                             IDENTITY_INVALID_ARGUMENT)
    if 0 < msg.party_threshold <= len(keyring.parties):
        keyring.party_threshold = msg.party_threshold
    keyring.description = msg.description
    keyring.key_req_fee = msg.key_req_fee
    keyring.sig_req_fee = msg.sig_req_fee
    keyring.is_active = msg.is_active
    ctx.store.set("keyring", keyring.address, keyring)
    ctx.emit("update_keyring", keyring_addr=keyring.address)
    return tx_pb2.MsgUpdateKeyringResponse()


# ---- as upstream x/identity/keeper/msg_server_*.go (the policy module is absent: actions run at once) ----


def _stored_keyring(ctx: Context, address: str) -> Keyring:
    keyring = ctx.store.get("keyring", address)
    if keyring is None:
        raise identity_error(f"keyring {address} not found", IDENTITY_NOT_FOUND)
    return keyring


def _active_keyring(ctx: Context, address: str) -> Keyring:
    keyring = _stored_keyring(ctx, address)
    if not keyring.is_active:
        raise identity_error(f"keyring {address} is not active", IDENTITY_INACTIVE)
    return keyring


def _require_admin(keyring: Keyring, creator: str) -> None:
    if creator not in keyring.admins:
        raise identity_error(f"tx creator {creator} is not keyring admin", IDENTITY_INVALID_ARGUMENT)


def remove_keyring_party(ctx: Context, msg: tx_pb2.MsgRemoveKeyringParty) -> Message:
    """RemoveKeyringParty: active keyring, party present, creator an admin (checked in that order).

    `decrease_threshold` decrements a uint32 (0 wraps to 2^32-1); then a threshold above the remaining
    party count is lowered to that count, which may be 0. Resharing (issue 15) relies on exactly this.
    """
    keyring = _active_keyring(ctx, msg.keyring_addr)
    if msg.party not in keyring.parties:
        raise identity_error(f"party {msg.party} is not a party of the keyring {msg.keyring_addr}",
                             IDENTITY_INVALID_ARGUMENT)
    _require_admin(keyring, msg.creator)
    keyring.parties.remove(msg.party)
    if msg.decrease_threshold:
        keyring.party_threshold = (keyring.party_threshold - 1) % 2**32
    keyring.party_threshold = min(keyring.party_threshold, len(keyring.parties))
    ctx.store.set("keyring", keyring.address, keyring)
    return tx_pb2.MsgRemoveKeyringPartyResponse()


def add_keyring_admin(ctx: Context, msg: tx_pb2.MsgAddKeyringAdmin) -> Message:
    keyring = _active_keyring(ctx, msg.keyring_addr)
    if msg.admin in keyring.admins:  # upstream names the creator in this message, not the admin
        raise identity_error(f"admin {msg.creator} is already an admin", IDENTITY_INVALID_ARGUMENT)
    _require_admin(keyring, msg.creator)
    keyring.admins.append(msg.admin)
    ctx.store.set("keyring", keyring.address, keyring)
    return tx_pb2.MsgAddKeyringAdminResponse()


def remove_keyring_admin(ctx: Context, msg: tx_pb2.MsgRemoveKeyringAdmin) -> Message:
    keyring = _active_keyring(ctx, msg.keyring_addr)
    if msg.admin not in keyring.admins:
        raise identity_error(f"admin {msg.admin} is not an admin of the keyring", IDENTITY_INVALID_ARGUMENT)
    _require_admin(keyring, msg.creator)
    if len(keyring.admins) == 1:
        raise identity_error(f"tx creator {msg.creator} is the last admin in keyring", IDENTITY_INVALID_ARGUMENT)
    keyring.admins.remove(msg.admin)
    ctx.store.set("keyring", keyring.address, keyring)
    return tx_pb2.MsgRemoveKeyringAdminResponse()


def deactivate_keyring(ctx: Context, msg: tx_pb2.MsgDeactivateKeyring) -> Message:
    """DeactivateKeyring: any admin, active or not; there is no message to reactivate but UpdateKeyring."""
    keyring = _stored_keyring(ctx, msg.keyring_addr)
    if msg.creator not in keyring.admins:
        raise identity_error("keyring deactivations should be requested by admins")
    keyring.is_active = False
    ctx.store.set("keyring", keyring.address, keyring)
    return tx_pb2.MsgDeactivateKeyringResponse()


def _stored_workspace(ctx: Context, address: str, plain: bool = False) -> Workspace:
    workspace = ctx.store.get("workspace", address)
    if workspace is None:
        if plain:  # UpdateWorkspace answers with fmt.Errorf
            raise identity_error(f"workspace {address} not found")
        raise identity_error(f"workspace {address} not found", IDENTITY_NOT_FOUND)
    return workspace


def add_workspace_owner(ctx: Context, msg: tx_pb2.MsgAddWorkspaceOwner) -> Message:
    workspace = _stored_workspace(ctx, msg.workspace_addr)
    if msg.creator not in workspace.owners:
        raise identity_error(f"tx creator {msg.creator} is not owner of the workspace", IDENTITY_INVALID_ARGUMENT)
    if msg.new_owner in workspace.owners:  # upstream names the creator here too
        raise identity_error(f"new owner {msg.creator} is already an owner of the workspace",
                             IDENTITY_INVALID_ARGUMENT)
    check_account_address(msg.new_owner, "owner")
    workspace.owners.append(msg.new_owner)
    ctx.store.set("workspace", workspace.address, workspace)
    ctx.emit("owner_added_to_workspace", workspace_addr=workspace.address, owner_addr=msg.new_owner)
    return tx_pb2.MsgAddWorkspaceOwnerResponse()


def remove_workspace_owner(ctx: Context, msg: tx_pb2.MsgRemoveWorkspaceOwner) -> Message:
    workspace = _stored_workspace(ctx, msg.workspace_addr)
    if msg.creator not in workspace.owners:
        raise identity_error(f"creator {msg.creator} is not a creator of the workspace", IDENTITY_INVALID_ARGUMENT)
    if msg.owner not in workspace.owners:
        raise identity_error(f"owner {msg.owner} is not an owner of the workspace {msg.workspace_addr}",
                             IDENTITY_INVALID_ARGUMENT)
    if len(workspace.owners) == 1:
        raise identity_error(f"cannot remove last owner {msg.owner}", IDENTITY_INVALID_ARGUMENT)
    workspace.owners.remove(msg.owner)
    ctx.store.set("workspace", workspace.address, workspace)
    return tx_pb2.MsgRemoveWorkspaceOwnerResponse()


def update_workspace(ctx: Context, msg: tx_pb2.MsgUpdateWorkspace) -> Message:
    """UpdateWorkspace: an owner changes the policy ids. The node has no policy module, so every
    non-zero id is an unknown policy (upstream: "admin policy N not found" / "sign policy not found")."""
    workspace = _stored_workspace(ctx, msg.workspace_addr, plain=True)
    if msg.creator not in workspace.owners:
        raise identity_error(f"creator {msg.creator} is not an owner of the workspace {msg.workspace_addr}")
    if workspace.admin_policy_id == msg.admin_policy_id and workspace.sign_policy_id == msg.sign_policy_id:
        raise identity_error("no updates to the policies")
    if msg.admin_policy_id != workspace.admin_policy_id and msg.admin_policy_id:
        raise identity_error(f"admin policy {msg.admin_policy_id} not found")
    if msg.sign_policy_id != workspace.sign_policy_id and msg.sign_policy_id:
        raise identity_error("sign policy not found")
    workspace.admin_policy_id = msg.admin_policy_id
    workspace.sign_policy_id = msg.sign_policy_id
    ctx.store.set("workspace", workspace.address, workspace)
    return tx_pb2.MsgUpdateWorkspaceResponse()


HANDLERS = {
    tx_pb2.MsgNewWorkspace: new_workspace,
    tx_pb2.MsgNewKeyring: new_keyring,
    tx_pb2.MsgAddKeyringParty: add_keyring_party,
    tx_pb2.MsgUpdateKeyring: update_keyring,
    tx_pb2.MsgRemoveKeyringParty: remove_keyring_party,
    tx_pb2.MsgAddKeyringAdmin: add_keyring_admin,
    tx_pb2.MsgRemoveKeyringAdmin: remove_keyring_admin,
    tx_pb2.MsgDeactivateKeyring: deactivate_keyring,
    tx_pb2.MsgAddWorkspaceOwner: add_workspace_owner,
    tx_pb2.MsgRemoveWorkspaceOwner: remove_workspace_owner,
    tx_pb2.MsgUpdateWorkspace: update_workspace,
}
