"""proto/ follows zrChain v6: every zrchain.* message and enum we declare, pinned against upstream.

The tables below are transcribed from zenrocklabs/zrchain (Go module zrchain/v6) at the revision read
for issue 13: proto/zrchain/treasury/{key,mpcsign,params,query,tx,wallet}.proto,
proto/zrchain/identity/{keyring,workspace,params,query,tx}.proto and proto/zrchain/dct/params.proto
(only the Asset enum). A row is `message: field number type, ...` (type as written upstream, without
package; `repeated` when repeated; a oneof's members are plain fields). Every message and enum of ours
in the zrchain packages must have a row, declare every upstream field with the same number, type and
label, and nothing else; an upstream message we do not use has no row.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from google.protobuf.descriptor import FieldDescriptor

import chain_client.proto_gen.zrchain as zrchain_stubs

UPSTREAM = """
identity.Keyring: address 1 string, creator 2 string, description 3 string, admins 4 repeated string,
    parties 5 repeated string, party_threshold 6 uint32, key_req_fee 7 uint64, sig_req_fee 8 uint64,
    is_active 9 bool, delegate_fees 10 bool
identity.MsgAddKeyringAdmin: creator 1 string, keyring_addr 2 string, admin 3 string
identity.MsgAddKeyringAdminResponse:
identity.MsgAddKeyringParty: creator 1 string, keyring_addr 2 string, party 3 string,
    increase_threshold 4 bool
identity.MsgAddKeyringPartyResponse:
identity.MsgAddWorkspaceOwner: creator 1 string, workspace_addr 2 string, new_owner 3 string, btl 4 uint64
identity.MsgAddWorkspaceOwnerResponse:
identity.MsgDeactivateKeyring: creator 1 string, keyring_addr 2 string
identity.MsgDeactivateKeyringResponse:
identity.MsgNewKeyring: creator 1 string, description 2 string, party_threshold 3 uint32, key_req_fee 4 uint64,
    sig_req_fee 5 uint64, delegate_fees 6 bool
identity.MsgNewKeyringResponse: addr 1 string
identity.MsgNewWorkspace: creator 1 string, admin_policy_id 2 uint64, sign_policy_id 3 uint64,
    additional_owners 4 repeated string
identity.MsgNewWorkspaceResponse: addr 1 string
identity.MsgRemoveKeyringAdmin: creator 1 string, keyring_addr 2 string, admin 3 string
identity.MsgRemoveKeyringAdminResponse:
identity.MsgRemoveKeyringParty: creator 1 string, keyring_addr 2 string, party 3 string,
    decrease_threshold 4 bool
identity.MsgRemoveKeyringPartyResponse:
identity.MsgRemoveWorkspaceOwner: creator 1 string, workspace_addr 2 string, owner 3 string, btl 4 uint64
identity.MsgRemoveWorkspaceOwnerResponse:
identity.MsgUpdateKeyring: creator 1 string, keyring_addr 2 string, party_threshold 3 uint32,
    key_req_fee 4 uint64, sig_req_fee 5 uint64, description 6 string, is_active 7 bool
identity.MsgUpdateKeyringResponse:
identity.MsgUpdateWorkspace: creator 1 string, workspace_addr 2 string, admin_policy_id 3 uint64,
    sign_policy_id 4 uint64, btl 5 uint64
identity.MsgUpdateWorkspaceResponse:
identity.Params: keyring_creation_fee 1 uint64
identity.QueryKeyringByAddressRequest: keyring_addr 1 string
identity.QueryKeyringByAddressResponse: keyring 1 Keyring
identity.QueryKeyringsRequest: pagination 1 PageRequest
identity.QueryKeyringsResponse: keyrings 1 repeated Keyring, pagination 2 PageResponse
identity.QueryParamsRequest:
identity.QueryParamsResponse: params 1 Params
identity.QueryWorkspaceByAddressRequest: workspace_addr 1 string
identity.QueryWorkspaceByAddressResponse: workspace 1 Workspace
identity.QueryWorkspacesRequest: pagination 1 PageRequest, owner 2 string, creator 3 string
identity.QueryWorkspacesResponse: workspaces 1 repeated Workspace, pagination 2 PageResponse
identity.Workspace: address 1 string, creator 2 string, owners 3 repeated string,
    child_workspaces 4 repeated string, admin_policy_id 5 uint64, sign_policy_id 6 uint64, alias 7 string
treasury.ICATransactionRequest: id 1 uint64, creator 2 string, key_id 3 uint64, key_type 4 KeyType,
    input_msg 5 bytes, status 6 SignRequestStatus, signed_data 7 repeated bytes,
    keyring_party_signatures 8 repeated PartySignature, reject_reason 9 string
treasury.Key: id 1 uint64, workspace_addr 2 string, keyring_addr 3 string, type 4 KeyType, public_key 5 bytes,
    index 9 uint64, sign_policy_id 10 uint64, zenbtc_metadata 11 ZenBTCMetadata
treasury.KeyAndWalletResponse: key 1 KeyResponse, wallets 2 repeated WalletResponse
treasury.KeyReqResponse: id 1 uint64, creator 2 string, workspace_addr 3 string, keyring_addr 4 string,
    key_type 5 string, status 6 string, keyring_party_signatures 7 repeated PartySignature,
    reject_reason 8 string, index 9 uint64, sign_policy_id 10 uint64, zenbtc_metadata 11 ZenBTCMetadata,
    mpc_btl 12 uint64, fee 13 uint64, public_key 14 bytes
treasury.KeyRequest: id 1 uint64, creator 2 string, workspace_addr 3 string, keyring_addr 4 string,
    key_type 5 KeyType, status 6 KeyRequestStatus, keyring_party_signatures 7 repeated bytes,
    reject_reason 8 string, index 9 uint64, sign_policy_id 10 uint64, zenbtc_metadata 11 ZenBTCMetadata,
    mpc_btl 12 uint64, fee 13 uint64, public_key 14 bytes, keyring_party_sigs 15 repeated PartySignature
treasury.KeyResponse: id 1 uint64, workspace_addr 2 string, keyring_addr 3 string, type 4 string,
    public_key 5 bytes, index 9 uint64, sign_policy_id 10 uint64, zenbtc_metadata 11 ZenBTCMetadata
treasury.MetadataEthereum: chain_id 1 uint64
treasury.MetadataSolana: network 1 SolanaNetworkType, mintAddress 2 string
treasury.MsgFulfilICATransactionRequest: creator 1 string, request_id 2 uint64, status 3 SignRequestStatus,
    keyring_party_signature 4 bytes, signed_data 5 bytes, reject_reason 6 string
treasury.MsgFulfilICATransactionRequestResponse:
treasury.MsgFulfilKeyRequest: creator 1 string, request_id 2 uint64, status 3 KeyRequestStatus,
    key 4 MsgNewKey, reject_reason 5 string, keyring_party_signature 6 bytes
treasury.MsgFulfilKeyRequestResponse:
treasury.MsgFulfilSignatureRequest: creator 1 string, request_id 2 uint64, status 3 SignRequestStatus,
    keyring_party_signature 4 bytes, signed_data 5 bytes, reject_reason 6 string
treasury.MsgFulfilSignatureRequestResponse:
treasury.MsgNewICATransactionRequest: creator 1 string, key_id 2 uint64, input_payload 3 string,
    connection_id 4 string, relative_timeout_timestamp 5 uint64, btl 6 uint64
treasury.MsgNewICATransactionRequestResponse: id 1 uint64, signature_request_id 2 uint64
treasury.MsgNewKey: public_key 1 bytes
treasury.MsgNewKeyRequest: creator 1 string, workspace_addr 2 string, keyring_addr 3 string, key_type 4 string,
    btl 5 uint64, index 6 uint64, ext_requester 7 string, ext_key_type 8 uint64, sign_policy_id 9 uint64,
    zenbtc_metadata 10 ZenBTCMetadata, mpc_btl 11 uint64
treasury.MsgNewKeyRequestResponse: key_req_id 1 uint64
treasury.MsgNewSignTransactionRequest: creator 1 string, key_id 2 uint64, wallet_type 3 WalletType,
    unsigned_transaction 4 bytes, metadata 5 Any, btl 6 uint64, cache_id 7 bytes, no_broadcast 8 bool,
    mpc_btl 9 uint64, key_ids 10 repeated uint64
treasury.MsgNewSignTransactionRequestResponse: id 1 uint64, signature_request_id 2 uint64
treasury.MsgNewSignatureRequest: creator 1 string, key_ids 2 repeated uint64, data_for_signing 3 string,
    btl 4 uint64, cache_id 5 bytes, verify_signing_data 6 bytes,
    verify_signing_data_version 7 VerificationVersion, mpc_btl 8 uint64, zenbtc_tx_bytes 9 bytes
treasury.MsgNewSignatureRequestResponse: sig_req_id 1 uint64
treasury.Params: mpc_keyring 1 string, zr_sign_address 2 string, keyring_commission 3 uint64,
    keyring_commission_destination 4 string, min_gas_fee 5 string, default_btl 6 uint64
treasury.PartySignature: creator 1 string, signature 2 bytes
treasury.QueryKeyByAddressRequest: address 1 string, keyring_addr 2 string, key_type 3 KeyType,
    wallet_type 4 WalletType, prefixes 5 repeated string
treasury.QueryKeyByAddressResponse: response 1 KeyAndWalletResponse
treasury.QueryKeyByIDRequest: id 1 uint64, wallet_type 2 WalletType, prefixes 3 repeated string
treasury.QueryKeyByIDResponse: key 1 KeyResponse, wallets 2 repeated WalletResponse
treasury.QueryKeyRequestByIDRequest: id 1 uint64
treasury.QueryKeyRequestByIDResponse: key_request 1 KeyReqResponse
treasury.QueryKeyRequestsRequest: keyring_addr 1 string, status 2 KeyRequestStatus, workspace_addr 3 string,
    pagination 4 PageRequest
treasury.QueryKeyRequestsResponse: key_requests 1 repeated KeyReqResponse, pagination 2 PageResponse
treasury.QueryKeysRequest: workspace_addr 1 string, wallet_type 2 WalletType, prefixes 3 repeated string,
    pagination 4 PageRequest
treasury.QueryKeysResponse: keys 1 repeated KeyAndWalletResponse, pagination 2 PageResponse
treasury.QueryParamsRequest:
treasury.QueryParamsResponse: params 1 Params
treasury.QuerySignTransactionRequestByIDRequest: id 1 uint64
treasury.QuerySignTransactionRequestByIDResponse: sign_transaction_request 1 SignTxReqResponse
treasury.QuerySignTransactionRequestsRequest: request_id 1 uint64, key_id 2 uint64, wallet_type 3 WalletType,
    status 4 SignRequestStatus, pagination 5 PageRequest
treasury.QuerySignTransactionRequestsResponse:,
    sign_transaction_requests 1 repeated SignTransactionRequestsResponse, pagination 2 PageResponse
treasury.QuerySignatureRequestByIDRequest: id 1 uint64
treasury.QuerySignatureRequestByIDResponse: sign_request 1 SignReqResponse
treasury.QuerySignatureRequestsRequest: keyring_addr 1 string, status 2 SignRequestStatus,
    pagination 3 PageRequest
treasury.QuerySignatureRequestsResponse: sign_requests 1 repeated SignReqResponse, pagination 2 PageResponse
treasury.SignReqResponse: id 1 uint64, creator 2 string, key_ids 3 repeated uint64, key_type 4 string,
    data_for_signing 5 repeated bytes, status 6 string, signed_data 7 repeated SignedDataWithID,
    keyring_party_sigs 8 repeated PartySignature, reject_reason 9 string, metadata 10 Any,
    parent_req_id 11 uint64, child_req_ids 12 repeated uint64, cache_id 13 bytes, mpc_btl 14 uint64,
    fee 15 uint64, zenbtc_tx_bytes 16 bytes
treasury.SignRequest: id 1 uint64, creator 2 string, key_id 3 uint64, key_type 4 KeyType,
    data_for_signing 5 repeated bytes, status 6 SignRequestStatus, signed_data 7 repeated SignedDataWithID,
    keyring_party_signatures 8 repeated bytes, reject_reason 9 string, metadata 10 Any,
    parent_req_id 11 uint64, child_req_ids 12 repeated uint64, cache_id 13 bytes, key_ids 14 repeated uint64,
    mpc_btl 15 uint64, fee 16 uint64, zenbtc_tx_bytes 17 bytes, keyring_party_sigs 18 repeated PartySignature
treasury.SignTransactionRequest: id 1 uint64, creator 2 string, key_id 3 uint64, wallet_type 4 WalletType,
    unsigned_transaction 5 bytes, sign_request_id 6 uint64, no_broadcast 7 bool, key_ids 8 repeated uint64
treasury.SignTransactionRequestsResponse: sign_transaction_requests 1 SignTxReqResponse,
    sign_request 2 SignReqResponse
treasury.SignTxReqResponse: id 1 uint64, creator 2 string, key_id 3 uint64, wallet_type 4 string,
    unsigned_transaction 5 bytes, sign_request_id 6 uint64, no_broadcast 7 bool, mpc_btl 8 uint64,
    key_ids 9 repeated uint64
treasury.SignedDataWithID: sign_request_id 1 uint64, signed_data 2 bytes
treasury.WalletResponse: address 1 string, type 2 string
treasury.ZenBTCMetadata: recipient_addr 1 string, chain_type 2 WalletType, chain_id 3 uint64,
    return_address 4 string, caip2_chain_id 5 string, asset 6 Asset
"""
UPSTREAM_ENUMS = """
dct.Asset: ASSET_UNSPECIFIED 0, ASSET_ZENBTC 1, ASSET_ZENZEC 2
treasury.KeyRequestStatus: KEY_REQUEST_STATUS_UNSPECIFIED 0, KEY_REQUEST_STATUS_PENDING 1,
    KEY_REQUEST_STATUS_PARTIAL 2, KEY_REQUEST_STATUS_FULFILLED 3, KEY_REQUEST_STATUS_REJECTED 4
treasury.KeyType: KEY_TYPE_UNSPECIFIED 0, KEY_TYPE_ECDSA_SECP256K1 1, KEY_TYPE_EDDSA_ED25519 2,
    KEY_TYPE_BITCOIN_SECP256K1 3
treasury.SignRequestStatus: SIGN_REQUEST_STATUS_UNSPECIFIED 0, SIGN_REQUEST_STATUS_PENDING 1,
    SIGN_REQUEST_STATUS_PARTIAL 2, SIGN_REQUEST_STATUS_FULFILLED 3, SIGN_REQUEST_STATUS_REJECTED 4
treasury.SolanaNetworkType: UNDEFINED 0, MAINNET 1, DEVNET 2, TESTNET 3, REGNET 4
treasury.VerificationVersion: UNKNOWN 0, BITCOIN_PLUS 1
treasury.WalletType: WALLET_TYPE_UNSPECIFIED 0, WALLET_TYPE_NATIVE 1, WALLET_TYPE_EVM 2,
    WALLET_TYPE_BTC_TESTNET 3, WALLET_TYPE_BTC_MAINNET 4, WALLET_TYPE_BTC_REGNET 5, WALLET_TYPE_SOLANA 6,
    WALLET_TYPE_ZCASH_MAINNET 7, WALLET_TYPE_ZCASH_TESTNET 8
"""

_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_INT32: "int32",
}


def _rows(table: str) -> dict[str, str]:
    """Join continuation lines, then map `zrchain.<name>` to its field list."""
    rows: dict[str, str] = {}
    last = ""
    for line in table.strip().splitlines():
        if line.startswith("    "):
            rows[last] += " " + line.strip()
            continue
        name, _, rest = line.partition(":")
        last = "zrchain." + name
        rows[last] = rest.strip()
    return rows


def _fields(row: str) -> dict[str, tuple[int, str]]:
    out = {}
    for item in filter(None, (part.strip() for part in row.split(","))):
        name, number, *kind = item.split()
        out[name] = (int(number), " ".join(kind))
    return out


def _our_kind(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        kind = field.message_type.name
    elif field.enum_type is not None:
        kind = field.enum_type.name
    else:
        kind = _SCALARS[field.type]
    return ("repeated " if field.is_repeated else "") + kind


def _declared() -> tuple[dict, dict]:
    """Every message and enum of the generated zrchain.* stubs, by full name."""
    messages, enums = {}, {}
    for info in pkgutil.walk_packages(zrchain_stubs.__path__, zrchain_stubs.__name__ + "."):
        if not info.name.endswith("_pb2"):
            continue
        file = importlib.import_module(info.name).DESCRIPTOR
        messages.update({m.full_name: m for m in file.message_types_by_name.values()})
        enums.update({e.full_name: e for e in file.enum_types_by_name.values()})
    return messages, enums


MESSAGES, ENUMS = _declared()
UPSTREAM_ROWS = _rows(UPSTREAM)
UPSTREAM_ENUM_ROWS = _rows(UPSTREAM_ENUMS)


def test_every_declared_message_and_enum_has_an_upstream_row():
    assert set(MESSAGES) <= set(UPSTREAM_ROWS), sorted(set(MESSAGES) - set(UPSTREAM_ROWS))
    assert set(ENUMS) <= set(UPSTREAM_ENUM_ROWS), sorted(set(ENUMS) - set(UPSTREAM_ENUM_ROWS))
    assert set(UPSTREAM_ROWS) <= set(MESSAGES), sorted(set(UPSTREAM_ROWS) - set(MESSAGES))


@pytest.mark.parametrize("name", sorted(UPSTREAM_ROWS))
def test_message_fields_match_upstream(name):
    ours = {f.name: (f.number, _our_kind(f)) for f in MESSAGES[name].fields}
    assert ours == _fields(UPSTREAM_ROWS[name])


@pytest.mark.parametrize("name", sorted(UPSTREAM_ENUM_ROWS))
def test_enum_values_match_upstream(name):
    ours = {v.name: (v.number, "") for v in ENUMS[name].values}
    assert ours == _fields(UPSTREAM_ENUM_ROWS[name])


def test_messages_live_in_the_upstream_packages():
    """Type URLs (`/zrchain.treasury.MsgFulfilICATransactionRequest`) come from the package + name."""
    assert MESSAGES["zrchain.treasury.MsgFulfilICATransactionRequest"].file.package == "zrchain.treasury"
    assert MESSAGES["zrchain.identity.MsgRemoveKeyringParty"].file.package == "zrchain.identity"
    assert ENUMS["zrchain.dct.Asset"].file.package == "zrchain.dct"
