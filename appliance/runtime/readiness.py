"""What "ready" means for each daemon, as checks that return the reasons it is not (empty: ready).

Why: systemd marks a `Type=notify` unit started at READY=1, and operators (and /readyz) take that as
"this daemon can do its job". A party that cannot read the chain, or whose TLS certificate no peer
will accept, or a controller whose party socket is not there, is not doing its job however healthy the
process looks. `daemon_life.serve_until_signalled` waits for these checks before it sends READY=1 and
shows their reasons in STATUS= and the log meanwhile.

- both daemons: the chain answers and reports the configured chain id (`chain_reasons`);
- controller: the party socket exists and is a socket (`socket_reasons`);
- party: its TLS certificate and the roster's peer certificates are issued by the cluster CA and valid
  now (`tls_reasons`).
"""

from __future__ import annotations

import datetime
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography import x509

Check = Callable[[], list[str]]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def chain_reasons(latest_block: Callable[[], tuple[str, int, Any]], chain_id: str,
                  endpoints: Iterable[str] = ()) -> list[str]:
    """Not ready while the chain does not answer or reports another chain id than `[chain] chain_id`."""
    where = ", ".join(endpoints) or "the configured endpoints"
    try:
        reported, _height, _when = latest_block()
    except Exception as exc:  # noqa: BLE001 - any failure to read the chain is a reason, not a crash
        return [f"chain unreachable at {where}: {_first_line(exc)}"]
    if reported != chain_id:
        return [f"chain at {where} reports chain id {reported!r} but [chain] chain_id is {chain_id!r}: "
                "fix chain_id or the endpoints"]
    return []


def socket_reasons(path: str | Path, what: str = "party socket") -> list[str]:
    """Not ready while the unix socket at `path` is absent (or something else sits there)."""
    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        return [f"{what} {path} does not exist (is zrkeyring-party running?)"]
    except OSError as exc:
        return [f"{what} {path}: {exc.strerror or exc}"]
    if not stat.S_ISSOCK(mode):
        return [f"{what} {path} is not a socket"]
    return []


def _load_certs(path: Path, what: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file: a CA file or a roster certificate may hold the old and the new
    one during a rotation (docs/operations.md, Certificate rotation)."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise _CertProblem(f"{what} {path}: {_first_line(exc)}") from None
    if not certs:
        raise _CertProblem(f"{what} {path}: no PEM certificate")
    return certs


class _CertProblem(Exception):
    """One certificate that cannot be used; the message says which and why."""


def _issued_by_any(cert: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except Exception:  # noqa: BLE001, S112 - InvalidSignature, ValueError, TypeError: not this CA
            continue
    return False


def cert_reasons(ca_path: Path, cert_paths: dict[str, Path],
                 now: datetime.datetime | None = None) -> list[str]:
    """Not ready while a certificate is unreadable, not issued by a cluster CA, or outside its validity.

    `cert_paths` maps a name the operator recognises ("this party's certificate", "party 3") to a file.
    The CA file may hold several CAs and a certificate file several certificates (a rotation): each
    certificate must be issued by one of the CAs, and at least one per file valid now.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        cas = _load_certs(ca_path, "cluster CA")
    except _CertProblem as exc:
        return [str(exc)]
    reasons = []
    for name, path in cert_paths.items():
        try:
            certs = _load_certs(path, name)
        except _CertProblem as exc:
            reasons.append(str(exc))
            continue
        if not all(_issued_by_any(cert, cas) for cert in certs):
            reasons.append(f"{name} ({path}) is not issued by the cluster CA {ca_path}: re-copy the cluster "
                           "bundle made by `cluster init` (or the rotation phase every host is in)")
            continue
        if not any(c.not_valid_before_utc <= now <= c.not_valid_after_utc for c in certs):
            reasons.append(f"{name} ({path}) is valid only {certs[0].not_valid_before_utc:%Y-%m-%d} to "
                           f"{certs[0].not_valid_after_utc:%Y-%m-%d}")
    return reasons


def cert_expiry(paths: dict[str, Path]) -> dict[str, float]:
    """Unix time each readable certificate file stops being valid (the latest notAfter in it: during a
    rotation the new certificate governs); unreadable ones are left out (their problem is a readiness
    reason already, and a made-up value would fire expiry alerts)."""
    out = {}
    for name, path in paths.items():
        try:
            out[name] = max(c.not_valid_after_utc.timestamp() for c in _load_certs(path, name))
        except _CertProblem:
            continue
    return out


def all_of(*checks: Check) -> Check:
    """One check from several: the reasons of all of them, in order."""
    return lambda: [reason for check in checks for reason in check()]
