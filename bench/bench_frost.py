"""FROST benchmarks: DKG and one signature, all parties in one process, messages through their byte
encodings. Shapes n x t: 3x2 and 5x3. Signing uses the minimum signer set (t parties), and every
signer aggregates and checks every share (as each party does in production to post its fulfilment).
secp256k1 signing is the BIP-340 variant (what the keyring posts for key type BITCOIN)."""

from __future__ import annotations

from appliance.mpc_party.protocols.frost import FROST_ED25519, FROST_SECP256K1_BIP340
from appliance.mpc_party.protocols.frost.local import run_dkg, sign
from bench.common import Result, mean_ms

SHAPES = [(3, 2), (5, 3)]
RUNS = 30
MESSAGE = bytes(32)


def run() -> list[Result]:
    results = []
    for label, suite in (("frost_ed25519", FROST_ED25519), ("frost_secp256k1", FROST_SECP256K1_BIP340)):
        for n, t in SHAPES:
            shape = f"{n}x{t}"
            dkg = mean_ms(lambda n=n, t=t, suite=suite: run_dkg(n, t, suite), RUNS)
            shares = run_dkg(n, t, suite)[:t]
            sig = mean_ms(lambda shares=shares, suite=suite: sign(suite, shares, MESSAGE), RUNS)
            results.append(Result(f"{label}.dkg_ms.{shape}", round(dkg, 3), "ms",
                                  note=f"{t}-of-{n} DKG, all {n} parties, one process"))
            results.append(Result(f"{label}.sign_ms.{shape}", round(sig, 3), "ms",
                                  note=f"{t} signers commit+sign+aggregate, one process"))
    return results
