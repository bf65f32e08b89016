"""`zrkeyring backup create|verify|restore`: a party's state as one file, checked against the chain.

    zrkeyring backup create  --config /etc/zrkeyring/party.toml --out /srv/backup/party-1-$(date +%F).tar
    zrkeyring backup verify  --config /etc/zrkeyring/party.toml /srv/backup/party-1-2026-12-01.tar
    zrkeyring backup restore --config /etc/zrkeyring/party.toml /srv/backup/party-1-2026-12-01.tar

Why a command and not `tar`: the share store is SQLite in WAL mode, and at these sizes committed shares
often live only in `shares.sqlite-wal`, so a copy of `shares.sqlite` alone was empty. `create` takes a
consistent snapshot of each database with SQLite's online backup API (safe while the daemons run) and
writes them with a manifest (SHA-256 of every file, the shares it holds) into one tar file, mode 0600.
The shares in it are ciphertext under the HSM's sealing key: useless without this party's token.

`verify` opens the backup's share store with this party's HSM (every row's tag is checked, so a backup
of another party or an altered one fails) and compares its shares with the keyring's keys on chain
(appliance/cli/sharecheck.py): exit 0 when every chain key has a share in it, 3 otherwise, naming them.

`restore` (party daemon stopped) refuses a backup that lacks shares the current store holds: restoring
an older backup used to drop newer shares silently. `--force` restores anyway, after moving the current
files to `data_dir/pre-restore-<time>/` (nothing is deleted) and naming every key it leaves out. The
party's session record (`party_state.sqlite`) and the controller journal are restored only where none
exists: the current ones remember more (signing sessions already run, transactions already posted).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.cli.output import HelpFormatter, add_json_flag, emit, warn
from appliance.cli.sharecheck import Comparison, HeldShare, compare, held_shares, keyring_keys
from appliance.hsm import Hsm
from appliance.hsm.store import ShareStore
from appliance.mpc_party.daemon import PartyConfig
from appliance.mpc_party.local_api import JobFailed, PartyClient
from appliance.rules.roster import Roster
from appliance.runtime.errors import UserError
from appliance.runtime.paths import ensure_dir
from appliance.runtime.version import version
from chain_client.client import ChainClient
from chain_client.errors import ChainUnavailable

FORMAT = "zrkeyring-backup/v1"
MANIFEST = "manifest.json"
SHARES, STATE, JOURNAL = "shares.sqlite", "party_state.sqlite", "journal.sqlite"
EXIT_INCOMPLETE = 3
MAX_MEMBER_BYTES = 1 << 30  # a member larger than this is not one of ours


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("backup", help="back up, verify and restore this party's shares and state",
                                  description=__doc__, formatter_class=HelpFormatter)
    commands = group.add_subparsers(dest="backup_command", metavar="SUBCOMMAND", required=True)
    create = commands.add_parser(
        "create", help="write a consistent snapshot of the party's databases to one file",
        formatter_class=HelpFormatter, description="Snapshot shares.sqlite and party_state.sqlite (and the "
        "controller journal with --controller-config) with SQLite's backup API; safe while the daemons run.",
        epilog="example:\n  zrkeyring backup create --config /etc/zrkeyring/party.toml "
        "--controller-config /etc/zrkeyring/controller.toml --out /srv/backup/party-1.tar")
    create.add_argument("--config", required=True, help="the party TOML file")
    create.add_argument("--controller-config", default="", help="also back up this controller's journal")
    create.add_argument("--out", required=True, help="new file to write (never overwritten)")
    add_json_flag(create)
    create.set_defaults(handler=run_create)
    for name, handler, text in (
        ("verify", run_verify, "check a backup with this party's HSM and compare its shares with the chain"),
        ("restore", run_restore, "restore a backup into the party's data_dir (party daemon stopped)"),
    ):
        command = commands.add_parser(name, help=text, description=text, formatter_class=HelpFormatter,
                                      epilog=f"example:\n  zrkeyring backup {name} --config "
                                      "/etc/zrkeyring/party.toml /srv/backup/party-1.tar")
        command.add_argument("backup", help="the file `backup create` wrote")
        command.add_argument("--config", required=True, help="the party TOML file")
        if name == "restore":
            command.add_argument("--force", action="store_true",
                                 help="restore even if the backup lacks shares the current store holds "
                                 "(the current files are kept in data_dir/pre-restore-<time>/)")
            command.add_argument("--controller-config", default="",
                                 help="restore the controller journal too, if its data_dir has none")
        add_json_flag(command)
        command.set_defaults(handler=handler)


# --- create ------------------------------------------------------------------------------------------


def run_create(args: argparse.Namespace) -> int:
    config = PartyConfig.load(args.config)
    data_dir = Path(config.party.data_dir)
    out = Path(args.out)
    if out.exists():
        raise UserError(f"--out {out}: exists; a backup never overwrites a file")
    sources = {SHARES: data_dir / SHARES, STATE: data_dir / STATE}
    if args.controller_config:
        from appliance.controller.service import ControllerConfig

        sources[JOURNAL] = Path(ControllerConfig.load(args.controller_config).controller.data_dir) / JOURNAL
    if not sources[SHARES].exists():
        raise UserError(f"{sources[SHARES]}: no share store to back up (party.data_dir = {data_dir})")
    with tempfile.TemporaryDirectory(prefix="zrkeyring-backup-") as tmp:
        files = {name: snapshot(path, Path(tmp) / name) for name, path in sources.items() if path.exists()}
        manifest = {
            "format": FORMAT, "zrkeyring": version(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "party": config.party.index, "chain_id": config.chain.chain_id, "keyring": _keyring(config),
            "files": {name: _sha256(path) for name, path in files.items()},
            "shares": listed_shares(files[SHARES]),
        }
        _write_archive(out, manifest, files)
    lines = [f"backup of party {config.party.index} written to {out} (mode 0600): "
             f"{', '.join(sorted(files))}; {len(manifest['shares'])} share row(s)",
             f"check it: zrkeyring backup verify --config {args.config} {out}"]
    emit(args, {"backup": str(out), **manifest}, lines)
    return 0


def snapshot(source: Path, target: Path) -> Path:
    """A consistent copy of SQLite database `source` (WAL content included) via the online backup API."""
    try:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise UserError(f"{source}: cannot read it for the backup: {exc}") from None
    return target


def listed_shares(path: Path) -> list[dict[str, Any]]:
    """The share rows of a snapshot, as listed (public columns; `verify` authenticates them)."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT keyring, key_id, party_index, share_version, key_type, group_public_key, state "
                          "FROM shares ORDER BY keyring, key_id, share_version").fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()
    return [{"keyring": r[0], "request_id": r[1], "party": r[2], "version": r[3], "key_type": r[4],
             "public_key": bytes(r[5]).hex(), "state": r[6]} for r in rows]


def _write_archive(out: Path, manifest: dict[str, Any], files: dict[str, Path]) -> None:
    tmp = out.with_name(f".{out.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            with tarfile.open(fileobj=handle, mode="w") as tar:
                data = json.dumps(manifest, indent=2, sort_keys=True).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
                tar.addfile(info, io.BytesIO(data))
                for name, path in sorted(files.items()):
                    tar.add(path, arcname=name, filter=_private)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    return info


# --- reading a backup ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backup:
    manifest: dict[str, Any]
    directory: Path  # where its files were extracted (private temporary directory)

    def file(self, name: str) -> Path | None:
        path = self.directory / name
        return path if path.exists() else None


@contextmanager
def opened_backup(path: str | Path) -> Iterator[Backup]:
    """Extract a backup into a private temporary directory, checking its manifest and every hash."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="zrkeyring-restore-") as tmp:
        try:
            with tarfile.open(path, mode="r:") as tar:
                members = {m.name: m for m in tar.getmembers()}
                manifest = _manifest(tar, members, path)
                for name, digest in manifest["files"].items():
                    _extract(tar, members, name, Path(tmp) / name, digest, path)
        except (OSError, tarfile.TarError) as exc:
            raise UserError(f"{path}: not a readable zrkeyring backup ({exc})") from None
        yield Backup(manifest, Path(tmp))


def _manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], path: Path) -> dict[str, Any]:
    member = members.get(MANIFEST)
    if member is None or not member.isfile() or member.size > MAX_MEMBER_BYTES:
        raise UserError(f"{path}: no {MANIFEST}: not a zrkeyring backup")
    try:
        manifest = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
    except (ValueError, RecursionError):
        raise UserError(f"{path}: {MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path}: not a {FORMAT} backup")
    files = manifest.get("files")
    if not isinstance(files, dict) or SHARES not in files or not set(files) <= {SHARES, STATE, JOURNAL}:
        raise UserError(f"{path}: {MANIFEST} lists no {SHARES} or unknown files")
    return manifest


def _extract(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, target: Path,
             digest: object, path: Path) -> None:
    member = members.get(name)
    if member is None or not member.isfile() or member.size > MAX_MEMBER_BYTES:
        raise UserError(f"{path}: {name} listed in the manifest but missing or not a file")
    data = tar.extractfile(member).read()  # type: ignore[union-attr]
    if hashlib.sha256(data).hexdigest() != digest:
        raise UserError(f"{path}: {name} does not match its SHA-256 in the manifest: damaged or altered")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


# --- verify ----------------------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    config = PartyConfig.load(args.config)
    with opened_backup(args.backup) as backup, Hsm.open(config.hsm) as hsm:
        _check_party(backup, config)
        shares = authenticated_shares(backup.file(SHARES), hsm, config.party.index)  # type: ignore[arg-type]
    result = compare_with_chain(config, shares)
    m = backup.manifest
    emit(args, {"backup": str(args.backup), "created": m.get("created"), "party": m.get("party"),
                **result.as_dict()},
         [f"backup {args.backup} of party {m.get('party')}, created {m.get('created')}: files intact, "
          f"{len(shares)} share(s) authenticated by this party's HSM", *result.lines(),
          "ok: every chain key of the keyring has a share in this backup" if result.complete else
          "INCOMPLETE: this backup cannot replace the party's store for the keys above"])
    return 0 if result.complete else EXIT_INCOMPLETE


def _check_party(backup: Backup, config: PartyConfig) -> None:
    m = backup.manifest
    if m.get("party") != config.party.index or m.get("chain_id") != config.chain.chain_id:
        raise UserError(f"backup of party {m.get('party')} on chain {m.get('chain_id')!r}, but this config is "
                        f"party {config.party.index} on {config.chain.chain_id!r}")


def authenticated_shares(path: Path, hsm: Hsm, party_index: int) -> list[HeldShare]:
    """The active shares of a store file, every row checked against its HSM tag (altered: StoreError)."""
    store = ShareStore(path, hsm)
    try:
        return held_shares(store.all_active(), party_index)
    finally:
        store.close()


def compare_with_chain(config: PartyConfig, shares: list[HeldShare]) -> Comparison:
    keyring = _keyring(config)
    chain = ChainClient(config.chain.client_config())
    try:
        return compare(shares, keyring_keys(chain, keyring), keyring)
    except ChainUnavailable as exc:
        raise UserError(f"chain not reachable to compare with ({exc}); the backup's files are intact") from None
    finally:
        chain.close()


def _keyring(config: PartyConfig) -> str:
    if config.chain.keyring:
        return config.chain.keyring
    return Roster.load(config.party.roster).cluster.keyring


# --- restore ---------------------------------------------------------------------------------------


def run_restore(args: argparse.Namespace) -> int:
    config = PartyConfig.load(args.config)
    _refuse_if_running(config.party.local_socket)
    data_dir = ensure_dir(config.party.data_dir, "party.data_dir")
    with opened_backup(args.backup) as backup, Hsm.open(config.hsm) as hsm:
        _check_party(backup, config)
        restored = authenticated_shares(backup.file(SHARES), hsm, config.party.index)  # type: ignore[arg-type]
        dropped = _newer_shares(data_dir / SHARES, hsm, config.party.index, restored, args.force)
        result = compare_with_chain(config, restored)
        kept = _move_aside(data_dir, [SHARES]) if (data_dir / SHARES).exists() else None
        written = [_install(backup.file(SHARES), data_dir / SHARES)]  # type: ignore[arg-type]
        journal_dir = _journal_dir(args)
        for name, target_dir in ((STATE, data_dir), (JOURNAL, journal_dir)):
            source = backup.file(name)
            if source is not None and target_dir is not None and not (target_dir / name).exists():
                written.append(_install(source, target_dir / name))
    for share in dropped:
        warn(f"share of request {share.request_id} ({share.key_type}, key {share.public_key.hex()}) is not in "
             f"the backup: left out; it is kept in {kept}")
    lines = [f"restored {', '.join(str(p) for p in written)} from {args.backup}"]
    if kept:
        lines.append(f"the replaced share store is kept in {kept}")
    lines += result.lines()
    if not result.complete:
        lines.append("WARNING: the restored store lacks shares of chain keys (above): this party cannot "
                     "sign with them; the keyring still can while t other parties hold theirs")
    emit(args, {"restored": [str(p) for p in written], "kept": str(kept) if kept else "",
                "left_out": [s.request_id for s in dropped], **result.as_dict()}, lines)
    return 0 if result.complete else EXIT_INCOMPLETE


def _refuse_if_running(socket_path: str) -> None:
    if not Path(socket_path).exists():
        return
    client = PartyClient(socket_path)
    try:
        client.status(timeout=2.0)
    except JobFailed:
        return  # a socket file left behind, nobody answers
    finally:
        client.close()
    raise UserError(f"the party daemon answers on {socket_path}: stop it first (systemctl stop "
                    "zrkeyring-party zrkeyring-controller), then restore")


def _newer_shares(current: Path, hsm: Hsm, party_index: int, restored: list[HeldShare],
                  force: bool) -> list[HeldShare]:
    """Shares the current store holds and the backup does not; refuse unless --force."""
    if not current.exists():
        return []
    try:
        held = authenticated_shares(current, hsm, party_index)
    except UserError as exc:
        if force:
            return []
        raise UserError(f"the current share store {current} cannot be read ({exc}), so it is unknown which "
                        "shares a restore would leave out; --force restores anyway (the current files are "
                        "kept aside)") from None
    in_backup = {s.public_key for s in restored}
    newer = [s for s in held if s.public_key not in in_backup]
    if newer and not force:
        names = ", ".join(f"request {s.request_id} ({s.key_type}, {s.public_key.hex()[:16]}…)" for s in newer)
        raise UserError(f"refused: the backup lacks {len(newer)} share(s) the current store holds: {names}. "
                        "Restore a newer backup, or --force to restore this one (the current files are kept "
                        "in data_dir/pre-restore-<time>/)")
    return newer


def _move_aside(data_dir: Path, names: list[str]) -> Path:
    """Move each database and its -wal/-shm into a new data_dir/pre-restore-<time>/ (nothing deleted)."""
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
    for n in range(1000):  # two restores in one second (a script, CI) get -1, -2, ...: never one over another
        kept = data_dir / (f"pre-restore-{stamp}" + (f"-{n}" if n else ""))
        try:
            kept.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    else:
        raise UserError(f"cannot make a new pre-restore directory in {data_dir}: 1000 exist for {stamp}")
    for name in names:
        for suffix in ("", "-wal", "-shm"):
            path = data_dir / f"{name}{suffix}"
            if path.exists():
                os.replace(path, kept / path.name)
    return kept


def _install(source: Path, target: Path) -> Path:
    """Copy `source` to `target` durably (temporary file, fsync, rename, fsync of the directory). Run as
    root, the file gets the data directory's owner: a root-owned database the party cannot open would
    turn a restore into an outage."""
    tmp = target.with_name(f".{target.name}.restore")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(source.read_bytes())
        handle.flush()
        os.fsync(handle.fileno())
    if os.geteuid() == 0:
        owner = target.parent.stat()
        os.chown(tmp, owner.st_uid, owner.st_gid)
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return target


def _journal_dir(args: argparse.Namespace) -> Path | None:
    if not args.controller_config:
        return None
    from appliance.controller.service import ControllerConfig

    return ensure_dir(ControllerConfig.load(args.controller_config).controller.data_dir, "controller.data_dir")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
