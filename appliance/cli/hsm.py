"""`zrkeyring hsm init|status --config FILE`: provision a party's token and inspect it."""

from __future__ import annotations

import argparse
import dataclasses
import os
import pwd
from pathlib import Path

from appliance.cli.output import HelpFormatter, add_json_flag, emit
from appliance.hsm.config import HsmConfig, load_hsm_config, read_pin
from appliance.hsm.facade import Hsm
from appliance.runtime.errors import UserError
from appliance.runtime.logs import register_secret


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("hsm", help="provision and inspect the party's HSM token")
    commands = group.add_subparsers(dest="hsm_command", metavar="SUBCOMMAND", required=True)

    for name, handler, help_text, description in (
        (
            "init",
            run_init,
            "create the sealing, identity and chain keys on the token (idempotent)",
            "Create any missing key on the token; print the public keys and the chain address.",
        ),
        (
            "status",
            run_status,
            "show token info, mechanisms present/missing and keys present",
            "Log in to the token and report what is there; changes nothing. Exits 3 if not ready.",
        ),
    ):
        example = f"example:\n  zrkeyring hsm {name} --config /etc/zrkeyring/party.toml --json"
        command = commands.add_parser(name, help=help_text, description=description, epilog=example,
                                      formatter_class=HelpFormatter)
        command.add_argument("--config", required=True, help="TOML file with an [hsm] section")
        add_json_flag(command)
        command.set_defaults(handler=handler)
    change = commands.add_parser(
        "change-pin", help="change the token's user PIN (the new one read from a file)", formatter_class=HelpFormatter,
        description="Log in with the current PIN (the config's source), set the new PIN from --new-pin-file "
        "(one line; never on the command line), check a login with it, then say where to put it.",
        epilog="example (as the service runs, step 2 of docs/operations.md):\n  systemd-run --pipe --wait "
        "--collect -p User=zrkeyring -p LoadCredential=hsm-pin:/etc/zrkeyring/hsm-pin \\\n"
        "      zrkeyring hsm change-pin --config /etc/zrkeyring/party.toml --new-pin-file /run/zrkeyring-new-pin")
    change.add_argument("--config", required=True, help="TOML file with an [hsm] section")
    change.add_argument("--new-pin-file", required=True, help="file holding the new user PIN (one line)")
    add_json_flag(change)
    change.set_defaults(handler=run_change_pin)


SOFTHSM_DEFAULT_CONF = "/etc/softhsm/softhsm2.conf"
LABEL_FIELD = 32  # PKCS#11 token labels are 32 bytes, space padded


def softhsm_token_dir(module: str, label: str, env: dict[str, str] | None = None) -> Path | None:
    """The SoftHSM directory holding token `label`, or None (another module, or not found/readable)."""
    if "softhsm" not in Path(module).name:
        return None
    env = os.environ if env is None else env
    try:
        conf = Path(env.get("SOFTHSM2_CONF", SOFTHSM_DEFAULT_CONF)).read_text(errors="replace")
    except OSError:
        return None
    tokendir = next((v.strip() for k, _, v in (line.partition("=") for line in conf.splitlines())
                     if k.strip() == "directories.tokendir"), "")
    wanted = label.encode().ljust(LABEL_FIELD)
    try:
        candidates = sorted(Path(tokendir).iterdir()) if tokendir else []
    except OSError:
        return None
    for directory in candidates:
        try:
            if wanted in (directory / "token.object").read_bytes():
                return directory
        except OSError:
            continue
    return None


def file_ownership_problem(token_dir: Path, user: str) -> str:
    """Why `hsm init` must not run as this user on this SoftHSM token, or "".

    Why: SoftHSM keeps each object as a file owned by whoever created it. Run as root on a token the
    service user owns, `hsm init` made root-owned 0600 key files the service cannot read; the service
    user's `hsm status` then said MISSING and its `hsm init` silently made a second set of keys with the
    same labels, and root was left with "2 objects named ...". Both directions are refused here.
    """
    owner = token_dir.stat().st_uid
    if os.geteuid() == 0 and owner != 0:
        name = _user_name(owner)
        return (f"token directory {token_dir} belongs to {name}: as root, hsm init would create key files "
                f"{name} cannot read. Run it as {name}, the way the service runs (docs/operations.md, "
                f"section 2: systemd-run -p User={name} ... zrkeyring hsm init, or runuser -u {name} -- "
                "zrkeyring hsm init with a pin_file it can read)")
    unreadable = [f.name for f in sorted(token_dir.iterdir()) if not os.access(f, os.R_OK)]
    if unreadable:
        return (f"token directory {token_dir} holds {len(unreadable)} file(s) {user} cannot read "
                f"({', '.join(unreadable[:3])}{', ...' if len(unreadable) > 3 else ''}), probably keys "
                f"created by root: hsm init would create a second set with the same labels. As root, "
                f"give them to the token's user: chown -R {_user_name(owner)}: {token_dir}; then re-run")
    return ""


def run_change_pin(args: argparse.Namespace) -> int:
    """C_SetPIN on the token: the current PIN from the config's source, the new one from a file (never
    argv, which every user of the host can read in /proc), then a fresh login with the new PIN."""
    config = load_hsm_config(args.config)
    new_pin = _read_new_pin(Path(args.new_pin_file))
    register_secret(new_pin)
    with Hsm.open(config, required_mechanisms=()) as hsm:
        if new_pin == read_pin(config):
            raise UserError("--new-pin-file: the new PIN equals the current one")
        try:
            hsm.submit(_set_pin, read_pin(config), new_pin).result()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - the PKCS#11 error, named in one line
            raise UserError(f"the token refused the PIN change: {type(exc).__name__} {exc}".strip()) from None
    Hsm.connect(config.module, config.token_label, new_pin, required_mechanisms=()).close()
    source = config.pin_source
    emit(args, {"changed": True, "token": config.token_label, "pin_source": source},
         [f"user PIN of token {config.token_label!r} changed; a login with the new PIN works",
          f"now put the new PIN where the config reads it ({source}): for the systemd credential, as root "
          f"install -m 0600 {args.new_pin_file} /etc/zrkeyring/hsm-pin; then delete {args.new_pin_file} and "
          "restart zrkeyring-party and zrkeyring-controller (running daemons keep their sessions until then)"])
    return 0


def _set_pin(link: object, old: str, new: str) -> None:
    link.session.set_pin(old, new)  # type: ignore[attr-defined]


def _read_new_pin(path: Path) -> str:
    try:
        pin = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--new-pin-file {path}: cannot read it ({exc})") from None
    if not pin or "\n" in pin:
        raise UserError(f"--new-pin-file {path}: expected one line with the new PIN")
    return pin


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _check_token_files(config: HsmConfig) -> str:
    directory = softhsm_token_dir(config.module, config.token_label)
    return file_ownership_problem(directory, _user_name(os.geteuid())) if directory is not None else ""


def run_init(args: argparse.Namespace) -> int:
    config = load_hsm_config(args.config)
    problem = _check_token_files(config)
    if problem:
        raise UserError(f"hsm init refused: {problem}")
    with Hsm.open(config) as hsm:
        outcomes = hsm.provision()
        identity, chain_key = hsm.identity_public_key().hex(), hsm.chain_public_key().hex()
        address = hsm.chain_address()
    emit(args, {"keys": outcomes, "identity_key": identity, "chain_public_key": chain_key, "chain_address": address},
         [*(f"key {label}: {outcome}" for label, outcome in outcomes.items()),
          f"identity public key (Ed25519): {identity}",
          f"chain public key (secp256k1):  {chain_key}",
          f"chain address:                 {address}"])
    return 0


def run_status(args: argparse.Namespace) -> int:
    # Open without the mechanism check, so a token lacking one is reported rather than refused.
    config = load_hsm_config(args.config)
    with Hsm.open(config, required_mechanisms=()) as hsm:
        status = hsm.status()
        address = hsm.chain_address() if all(status.keys.values()) else ""
    problem = _check_token_files(config)
    lines = status.lines()
    if problem:
        lines.append(f"note: {problem}")
    if address:
        lines.append(f"chain address: {address}")
    emit(args, {**dataclasses.asdict(status), "ready": status.ready, "chain_address": address, "note": problem},
         lines)
    return 0 if status.ready else 3
