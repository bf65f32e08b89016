"""`zrkeyring keys`: the join of the chain's keys with this party's shares (appliance/cli/keys.py)."""

from __future__ import annotations

from types import SimpleNamespace

from appliance.cli.keys import key_rows, summary
from appliance.cli.main import build_parser


def chain_key(key_id: int, public: bytes) -> SimpleNamespace:
    return SimpleNamespace(id=key_id, type="KEY_TYPE_ECDSA_SECP256K1", public_key=public, keyring_addr="k")


def held(public: bytes, version: int, pending: int = 0) -> dict:
    return {"public_key": public.hex(), "key_type": "KEY_TYPE_ECDSA_SECP256K1", "version": version,
            "pending_version": pending, "threshold": 2, "stored_at": 1.7e9, "request_id": 1}


def test_rows_ok_pending_missing_orphan() -> None:
    a, b, c, d = (bytes([i]) * 33 for i in (2, 3, 4, 5))
    rows = key_rows([chain_key(2, b), chain_key(1, a), chain_key(3, c)], [held(a, 3), held(b, 1, 2), held(d, 1)])
    assert [(r.key_id, r.state) for r in rows] == [(1, "ok"), (2, "pending"), (3, "missing"), (None, "orphan")]
    assert rows[1].pending_version == 2 and "v1 (v2 pending)" in rows[1].line()
    assert summary(rows) == "3 on chain: 2 held (1 with a refresh pending), 1 missing, 1 orphan share(s)"


def test_keys_subcommand_registered() -> None:
    args = build_parser().parse_args(["keys", "--config", "x.toml", "--json"])
    assert args.json and args.handler.__name__ == "keys_command"
