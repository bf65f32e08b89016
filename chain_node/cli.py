"""`zrkeyring-chain`: run the development chain node and act as a workspace owner / keyring admin.

    zrkeyring-chain init --chain-id dev-1 --genesis genesis.json --key owner --key party1
    zrkeyring-chain start --genesis genesis.json --data-dir ./chain --listen 127.0.0.1:9090 \
        --tls-cert node.pem --tls-key node.key          # TLS only; without them: plaintext
    zrkeyring-chain workspace-create --keys-file keys.json --key owner
    zrkeyring-chain keyring-create --keys-file keys.json --key owner --threshold 1
    zrkeyring-chain keyring-add-party --keys-file keys.json --key owner --keyring keyring1... --party party1
    zrkeyring-chain keyring-remove-party --key owner --keyring keyring1... --party party1 [--decrease-threshold]
    zrkeyring-chain keyring-update --key owner --keyring keyring1... [--threshold N] [--no-active] ...
    zrkeyring-chain keyring-admin add|remove|deactivate --key owner --keyring keyring1... [--admin A]
    zrkeyring-chain key-request --keys-file keys.json --key owner --workspace W --keyring K
    zrkeyring-chain sign-request --keys-file keys.json --key owner --key-id 1 --data <64 hex>[,<64 hex>...]
    zrkeyring-chain show key-request 1 --node 127.0.0.1:9090 --tls-ca ca.pem

The key file holds software secp256k1 keys in plain hex: it is for the demo and tests only.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from appliance.runtime.errors import UserError
from chain_client import messages
from chain_client.client import ChainClient, ClientConfig, msg_responses
from chain_client.crypto import SoftwareSigner
from chain_client.errors import ChainError
from chain_client.messages import bank_send
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.proto_gen.zrchain.treasury import tx_pb2 as treasury_tx
from chain_node.genesis import Genesis, GenesisAccount, Params, load_genesis
from chain_node.keyfile import key_from_file, read_key_file, write_key_file
from chain_node.server import Node, NodeConfig

DEFAULT_BALANCE = 10**15


def cmd_init(args: argparse.Namespace) -> int:
    signers = {name: SoftwareSigner() for name in args.key}
    accounts = [GenesisAccount(s.address(), args.balance) for s in signers.values()]
    accounts += [GenesisAccount(address, args.balance) for address in args.fund]
    params = Params(default_btl=args.default_btl, min_gas_price=args.min_gas_price)
    genesis = Genesis(chain_id=args.chain_id, params=params, accounts=accounts)
    Path(args.genesis).write_text(genesis.to_json())
    load_genesis(args.genesis)  # proves the file we wrote is one the node accepts
    if signers:
        write_key_file(Path(args.keys_file), args.chain_id, signers)
    for name, signer in signers.items():
        print(f"{name}: {signer.address()}")
    print(f"genesis written to {args.genesis}" + (f", keys to {args.keys_file}" if signers else ""))
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    genesis = load_genesis(args.genesis)
    config = NodeConfig(data_dir=Path(args.data_dir), listen=args.listen, block_time=args.block_time,
                        tls_cert=_path_or_none(args.tls_cert), tls_key=_path_or_none(args.tls_key))
    # The handlers go in before the node is built: building it binds the port, so a caller that waits
    # for the port (LocalNode.start) may send SIGTERM before the next line runs. A stop that early is
    # still a clean stop, exit 0 (CI once saw -15 from test_node_process_exit_code_of_a_clean_stop).
    built: list[Node] = []

    def stop(*_: object) -> None:
        if not built:
            raise SystemExit(0)
        built[0]._stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        node = Node(genesis, config)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None
    built.append(node)
    node.start()
    print(f"listening on {config.listen}", flush=True)
    node.wait()
    node.stop()
    if node.failed:
        print("zrkeyring-chain: block production failed; the node stopped (see the log)", file=sys.stderr)
        return 1
    return 0


def _path_or_none(value: str) -> Path | None:
    return Path(value) if value else None


def tls_options(args: argparse.Namespace) -> dict:
    """ClientConfig TLS fields from --tls-ca / --tls-server-name (none: plaintext)."""
    if not args.tls_ca:
        return {}
    try:
        pem = Path(args.tls_ca).read_bytes()
    except OSError as exc:
        raise UserError(f"--tls-ca {args.tls_ca}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise UserError(f"--tls-ca {args.tls_ca}: not a PEM certificate")
    return {"tls_ca_pem": pem, "tls_server_name": args.tls_server_name}


def _session(args: argparse.Namespace) -> tuple[ChainClient, SoftwareSigner]:
    chain_id, signer = key_from_file(Path(args.keys_file), args.key)
    config = ClientConfig(endpoints=args.node, chain_id=args.chain_id or chain_id, simulate=True,
                          **tls_options(args))
    return ChainClient(config), signer


def _party_address(args: argparse.Namespace, name_or_address: str) -> str:
    if name_or_address.startswith("zen1"):
        return name_or_address
    _, signers = read_key_file(Path(args.keys_file))
    if name_or_address not in signers:
        raise UserError(f"{name_or_address!r} is neither a zen1 address nor a key in {args.keys_file}")
    return signers[name_or_address].address()


def _submit(args: argparse.Namespace, message: Message, response_cls: type[Message]) -> Message:
    client, signer = _session(args)
    with client:
        message.creator = signer.address()
        response = client.send(signer, [message])
        (result,) = msg_responses(response, [response_cls])
        print(f"tx {response.txhash} in block {response.height}")
        return result


def cmd_workspace_create(args: argparse.Namespace) -> int:
    result = _submit(args, identity_tx.MsgNewWorkspace(), identity_tx.MsgNewWorkspaceResponse)
    print(f"workspace: {result.addr}")
    return 0


def cmd_keyring_create(args: argparse.Namespace) -> int:
    msg = identity_tx.MsgNewKeyring(
        description=args.description,
        party_threshold=args.threshold,
        key_req_fee=args.key_req_fee,
        sig_req_fee=args.sig_req_fee,
    )
    result = _submit(args, msg, identity_tx.MsgNewKeyringResponse)
    print(f"keyring: {result.addr}")
    return 0


def cmd_keyring_add_party(args: argparse.Namespace) -> int:
    msg = identity_tx.MsgAddKeyringParty(
        keyring_addr=args.keyring,
        party=_party_address(args, args.party),
        increase_threshold=args.increase_threshold,
    )
    _submit(args, msg, identity_tx.MsgAddKeyringPartyResponse)
    print(f"party {msg.party} added to {args.keyring}")
    return 0


def cmd_keyring_remove_party(args: argparse.Namespace) -> int:
    """identity RemoveKeyringParty; a threshold above the remaining party count drops to that count."""
    msg = identity_tx.MsgRemoveKeyringParty(
        keyring_addr=args.keyring, party=_party_address(args, args.party), decrease_threshold=args.decrease_threshold
    )
    _submit(args, msg, identity_tx.MsgRemoveKeyringPartyResponse)
    print(f"party {msg.party} removed from {args.keyring}")
    return 0


def cmd_keyring_update(args: argparse.Namespace) -> int:
    """identity UpdateKeyring from the keyring as stored: only the given options change (the chain sets
    description, fees and is_active from every message, and ignores a threshold of 0 or above the
    party count)."""
    client, signer = _session(args)
    with client:
        keyring = client.keyring(args.keyring)
        if keyring is None:
            raise UserError(f"keyring {args.keyring} not found")
        changes = {name: value for name, value in (
            ("party_threshold", args.threshold), ("description", args.description),
            ("key_req_fee", args.key_req_fee), ("sig_req_fee", args.sig_req_fee), ("is_active", args.active),
        ) if value is not None}
        response = client.send(signer, [messages.update_keyring(signer.address(), keyring, **changes)])
        print(f"tx {response.txhash} in block {response.height}")
        after = client.keyring(args.keyring)
    print(f"keyring {after.address}: threshold {after.party_threshold} of {len(after.parties)}, "
          f"active {after.is_active}")
    return 0


def cmd_keyring_admin(args: argparse.Namespace) -> int:
    """AddKeyringAdmin / RemoveKeyringAdmin / DeactivateKeyring (the keyring must be active for the first
    two; the last admin cannot be removed)."""
    if args.action == "deactivate":
        _submit(args, identity_tx.MsgDeactivateKeyring(keyring_addr=args.keyring),
                identity_tx.MsgDeactivateKeyringResponse)
        print(f"keyring {args.keyring} deactivated")
        return 0
    if not args.admin:
        raise UserError(f"keyring-admin {args.action} needs --admin")
    admin = _party_address(args, args.admin)
    if args.action == "add":
        _submit(args, identity_tx.MsgAddKeyringAdmin(keyring_addr=args.keyring, admin=admin),
                identity_tx.MsgAddKeyringAdminResponse)
    else:
        _submit(args, identity_tx.MsgRemoveKeyringAdmin(keyring_addr=args.keyring, admin=admin),
                identity_tx.MsgRemoveKeyringAdminResponse)
    print(f"admin {admin} {'added to' if args.action == 'add' else 'removed from'} {args.keyring}")
    return 0


def cmd_key_request(args: argparse.Namespace) -> int:
    msg = treasury_tx.MsgNewKeyRequest(
        workspace_addr=args.workspace, keyring_addr=args.keyring, key_type=args.type, mpc_btl=args.btl
    )
    result = _submit(args, msg, treasury_tx.MsgNewKeyRequestResponse)
    print(f"key request: {result.key_req_id}")
    return 0


def cmd_sign_request(args: argparse.Namespace) -> int:
    msg = treasury_tx.MsgNewSignatureRequest(key_ids=args.key_id, data_for_signing=args.data)
    msg.mpc_btl = args.btl
    result = _submit(args, msg, treasury_tx.MsgNewSignatureRequestResponse)
    print(f"sign request: {result.sig_req_id}")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    """Fund an account after genesis (a bank MsgSend), e.g. a party host's chain address."""
    if args.amount <= 0:
        raise UserError("--amount must be a positive number of urock")
    client, signer = _session(args)
    with client:
        to = _party_address(args, args.to)
        response = client.send(signer, [bank_send(signer, to, args.amount)])
        print(f"tx {response.txhash} in block {response.height}")
        print(f"sent {args.amount}urock to {to}; balance now {client.balance(to)}urock")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with ChainClient(ClientConfig(endpoints=args.node, **tls_options(args))) as client:
        lookups = {
            "key-request": lambda v: client.key_request(int(v)),
            "sign-request": lambda v: client.sign_request(int(v)),
            "key": lambda v: client.key(int(v)),
            "keyring": client.keyring,
            "workspace": client.workspace,
            "account": client.account,
            "sign-tx-request": lambda v: client.sign_transaction_request(int(v)),
        }
        found = lookups[args.what](args.id)
    if found is None:
        raise UserError(f"{args.what} {args.id} not found")
    print(json.dumps(MessageToDict(found, preserving_proto_field_name=True), indent=2))
    return 0


def _client_options(parser: argparse.ArgumentParser, signing: bool = True) -> None:
    parser.add_argument(
        "--node", action="append", default=None, help="node gRPC endpoint; repeat for failover"
    )
    parser.add_argument("--tls-ca", default="", help="PEM CA (or node certificate) to pin; default plaintext")
    parser.add_argument("--tls-server-name", default="", help="name the node certificate must carry")
    if signing:
        parser.add_argument("--keys-file", default="keys.json", help="software key file written by `init`")
        parser.add_argument("--key", required=True, help="name of the signing key in the key file")
        parser.add_argument("--chain-id", default="", help="chain id (default: the one in the key file)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zrkeyring-chain",
        description="Development zrChain node (treasury + identity over gRPC) and owner/admin commands.",
        epilog="The node is for development, tests and demos; production keyrings talk to a real zrChain.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("init", help="write a genesis file, optionally generating funded software keys")
    p.add_argument("--chain-id", default="zrkeyring-dev-1")
    p.add_argument("--genesis", default="genesis.json", help="output file (.json, or TOML otherwise is read)")
    p.add_argument("--keys-file", default="keys.json", help="where generated keys go (demo/tests only)")
    p.add_argument("--key", action="append", default=[], help="generate and fund a key with this name")
    p.add_argument("--fund", action="append", default=[], help="fund an existing zen1 address")
    p.add_argument("--balance", type=int, default=DEFAULT_BALANCE, help="urock per funded account")
    p.add_argument("--default-btl", type=int, default=20, help="blocks before a request times out")
    p.add_argument("--min-gas-price", type=float, default=0.0025, help="urock per gas")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("start", help="run the node until SIGTERM/Ctrl-C")
    p.add_argument("--genesis", required=True)
    p.add_argument("--data-dir", required=True, help="state directory (SQLite)")
    p.add_argument("--listen", default="127.0.0.1:9090", help="gRPC address")
    p.add_argument("--block-time", type=float, default=1.0, help="seconds between blocks")
    p.add_argument("--tls-cert", default="", help="PEM certificate to serve TLS with (needs --tls-key)")
    p.add_argument("--tls-key", default="", help="PEM private key of --tls-cert (keep it 0600)")
    p.set_defaults(handler=cmd_start)

    p = sub.add_parser("workspace-create", help="create a workspace owned by --key")
    _client_options(p)
    p.set_defaults(handler=cmd_workspace_create)

    p = sub.add_parser("keyring-create", help="register a keyring; --key becomes its admin")
    _client_options(p)
    p.add_argument("--description", default="")
    p.add_argument("--threshold", type=int, default=1, help="party_threshold")
    p.add_argument("--key-req-fee", type=int, default=0)
    p.add_argument("--sig-req-fee", type=int, default=0)
    p.set_defaults(handler=cmd_keyring_create)

    p = sub.add_parser("keyring-add-party", help="add a party (zen1 address or key name) to a keyring")
    _client_options(p)
    p.add_argument("--keyring", required=True)
    p.add_argument("--party", required=True)
    p.add_argument("--increase-threshold", action="store_true")
    p.set_defaults(handler=cmd_keyring_add_party)

    p = sub.add_parser("keyring-remove-party", help="remove a party (zen1 address or key name) from a keyring")
    _client_options(p)
    p.add_argument("--keyring", required=True)
    p.add_argument("--party", required=True)
    p.add_argument("--decrease-threshold", action="store_true")
    p.set_defaults(handler=cmd_keyring_remove_party)

    p = sub.add_parser("keyring-update", help="change a keyring's threshold, fees, description or activity")
    _client_options(p)
    p.add_argument("--keyring", required=True)
    p.add_argument("--threshold", type=int, default=None, help="party_threshold (ignored if 0 or > parties)")
    p.add_argument("--description", default=None)
    p.add_argument("--key-req-fee", type=int, default=None)
    p.add_argument("--sig-req-fee", type=int, default=None)
    p.add_argument("--active", action=argparse.BooleanOptionalAction, default=None)
    p.set_defaults(handler=cmd_keyring_update)

    p = sub.add_parser("keyring-admin", help="add or remove a keyring admin, or deactivate the keyring")
    _client_options(p)
    p.add_argument("action", choices=["add", "remove", "deactivate"])
    p.add_argument("--keyring", required=True)
    p.add_argument("--admin", default="", help="zen1 address or key name (add, remove)")
    p.set_defaults(handler=cmd_keyring_admin)

    p = sub.add_parser("key-request", help="ask a keyring for a new key")
    _client_options(p)
    p.add_argument("--workspace", required=True)
    p.add_argument("--keyring", required=True)
    p.add_argument("--type", default="ecdsa", help="ecdsa, ed25519/eddsa or bitcoin/btc")
    p.add_argument("--btl", type=int, default=0, help="blocks to live (0: chain default)")
    p.set_defaults(handler=cmd_key_request)

    p = sub.add_parser("sign-request", help="ask a keyring to sign hashes with a key")
    _client_options(p)
    p.add_argument("--key-id", type=int, action="append", required=True)
    p.add_argument("--data", required=True, help="comma-separated hex (32-byte digests for ECDSA keys)")
    p.add_argument("--btl", type=int, default=0)
    p.set_defaults(handler=cmd_sign_request)

    p = sub.add_parser("send", help="send urock to an account (bank MsgSend): fund a keyring party")
    _client_options(p)
    p.add_argument("--to", required=True, help="zen1 address or key name")
    p.add_argument("--amount", type=int, required=True, help="urock to send")
    p.set_defaults(handler=cmd_send)

    p = sub.add_parser("show", help="print a request, key, keyring, workspace or account as JSON")
    _client_options(p, signing=False)
    p.add_argument("what", choices=["key-request", "sign-request", "key", "keyring", "workspace", "account",
                                    "sign-tx-request"])
    p.add_argument("id", help="request/key id or address")
    p.set_defaults(handler=cmd_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "node", False) is None:
        args.node = ["127.0.0.1:9090"]
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (UserError, ChainError) as exc:
        print(f"zrkeyring-chain: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
