"""Key life-cycle benchmarks at protocol level: all parties in one process, messages through their
byte encodings via the daemon's `Session` face (no transport, no HSM sealing, no chain).

- lifecycle.refresh_100_keys_s: 100 keys of a 2-of-3 keyring (50 ECDSA, 50 Ed25519) each refreshed
  by a resharing to the same set (a quorum of 2 dealers, all 3 receive, fresh OT pairs for ECDSA);
- lifecycle.reshare_100_keys_s: the same 100 keys reshared 2-of-3 -> 3-of-4, party 4 joining as a
  receiver with no old share (the daemons' join, docs/protocols/reshare.md "Joining parties").

Keys are made once by the DKG (not timed). Every tenth new key signs once and is verified with an
independent library (a quorum of the last t parties, so the joiner signs), so the figures are of
resharings that work.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from nacl.signing import VerifyKey

from appliance.local.demo_dkls23 import verify_independently
from appliance.mpc_party.protocols.dkls23 import local as dkls_local
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.frost.local import run_dkg, sign
from appliance.mpc_party.protocols.group import ED25519, SECP256K1
from appliance.mpc_party.protocols.reshare import ReshareSpec
from appliance.mpc_party.protocols.reshare_sessions import reshare_session
from appliance.mpc_party.protocols.sessions import run_in_process
from bench.common import Result

KEYS = 100


def reshare_one(key_type: str, old: dict, dealers: tuple[int, ...], new: tuple[int, ...], t: int) -> dict:
    some = next(iter(old.values()))
    ecdsa = key_type != "KEY_TYPE_EDDSA_ED25519"
    public = some.public_key if ecdsa else some.group_public_key
    spec = ReshareSpec(SECP256K1 if ecdsa else ED25519, secrets.token_bytes(32), public, dealers, new, t)
    sessions = [reshare_session(key_type, spec, p, old.get(p), secrets.token_bytes) for p in spec.participants]
    return {s.me: r for s, r in zip(sessions, run_in_process(sessions), strict=True) if r is not None}


def make_keys() -> list[tuple[str, dict]]:
    keys = []
    for i in range(KEYS):
        if i % 2 == 0:
            keys.append(("KEY_TYPE_ECDSA_SECP256K1", {k.party_id: k for k in dkls_local.run_dkg(3, 2)}))
        else:
            keys.append(("KEY_TYPE_EDDSA_ED25519", {s.party_id: s for s in run_dkg(3, 2, FROST_ED25519)}))
    return keys


def spot_check(key_type: str, new: dict, quorum: list[int]) -> None:
    shares = [new[i] for i in quorum]
    if key_type == "KEY_TYPE_EDDSA_ED25519":
        msg = secrets.token_bytes(32)
        VerifyKey(shares[0].group_public_key).verify(msg, sign(FROST_ED25519, shares, msg))
    else:
        digest = hashlib.sha256(secrets.token_bytes(8)).digest()
        verify_independently(shares[0].public_key, digest, dkls_local.sign_now(shares, digest))


def timed_pass(keys: list[tuple[str, dict]], new: tuple[int, ...], t: int) -> float:
    start = time.perf_counter()
    out = [(kt, reshare_one(kt, old, (1, 2), new, t)) for kt, old in keys]
    elapsed = time.perf_counter() - start
    for i, (kt, shares) in enumerate(out):
        if i % 10 in (0, 1):
            spot_check(kt, shares, list(new[-t:]))
    return elapsed


def run() -> list[Result]:
    keys = make_keys()
    refresh = timed_pass(keys, (1, 2, 3), 2)
    reshare = timed_pass(keys, (1, 2, 3, 4), 3)
    note = "one process, all parties, Session face, no transport/HSM; 50 ECDSA (DKLs23) + 50 Ed25519"
    return [Result("lifecycle.refresh_100_keys_s", round(refresh, 2), "s", note="2-of-3 same set; " + note),
            Result("lifecycle.reshare_100_keys_s", round(reshare, 2), "s", note="2-of-3 -> 3-of-4; " + note)]
