"""After a real run, no party's share, secret scalar or PIN appears in any file of any party."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from appliance.local.localnet import ROOT

# Runs inside a party's own environment (its SOFTHSM2_CONF): unseal every active share with that party's
# HSM and print the secrets the scan must not find. Test-only: production never prints a share.
UNSEAL = """
import json, sys
from appliance.hsm import Hsm, load_hsm_config, read_pin
from appliance.hsm.store import ShareStore, open_share
from appliance.mpc_party.protocols import dispatch as protocols
config = load_hsm_config(sys.argv[1])
hsm = Hsm.open(config)
store = ShareStore(sys.argv[2], hsm)
found = []
for record in store.all_active():
    plain = open_share(hsm, record)
    secret = protocols.import_share(record.meta.key_type, plain).secret
    found.append([plain.hex(), secret.to_bytes(32, "big").hex(), secret.to_bytes(32, "little").hex()])
print(json.dumps({"shares": found, "pin": read_pin(config)}))
hsm.close()
"""


def party_secrets(host) -> dict:
    hsm_toml = next((host.directory / "secrets").glob("*.toml"))
    store = host.directory / "data" / "shares.sqlite"
    result = subprocess.run([sys.executable, "-c", UNSEAL, str(hsm_toml), str(store)],
                            cwd=ROOT, env=host.env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def test_no_share_or_pin_in_any_file(keyring, keys) -> None:
    needles: list[tuple[str, bytes]] = []
    for host in keyring.hosts:
        found = party_secrets(host)
        assert len(found["shares"]) == len(keys)  # one share per key on every party
        for plain, big, little in found["shares"]:
            needles += [(f"party {host.index} share", bytes.fromhex(plain)),
                        (f"party {host.index} secret (BE)", bytes.fromhex(big)),
                        (f"party {host.index} secret (LE)", bytes.fromhex(little))]
        needles.append((f"party {host.index} PIN", found["pin"].encode()))
    pin_files = {p.resolve() for host in keyring.hosts for p in (host.directory / "secrets").glob("*.pin")}
    scanned = 0
    for path in Path(keyring.root).rglob("*"):
        if not path.is_file() or path.resolve() in pin_files:
            continue
        data = path.read_bytes()
        scanned += 1
        for what, needle in needles:
            assert needle not in data, f"{what} found in {path}"
    assert scanned > 20
    # The TLS transport keys were sealed by each party's HSM (`cluster seal-key`): no plaintext key file.
    assert not list(Path(keyring.root).rglob("party.key"))
    assert len(list(Path(keyring.root).rglob("party.key.sealed"))) == len(keyring.hosts)
