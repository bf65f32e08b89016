"""A malicious party for the e2e tests: the real party daemon, its DKLs23 signing behaviour changed.

Run as `python -m tests.e2e.evil_party party run --config ...` (LocalKeyring.start_role(module=...)).
ZRKEYRING_EVIL selects the strategy, ZRKEYRING_EVIL_LOG is a JSON-lines file of what it observed:

- `bitflip`: in every signing session, as OT-extension receiver toward every honest signer, flip one
  bit of column l (l = session counter mod 128) in the first padding row of U, with check values
  consistent with the flipped U. The honest party passes its check iff its Delta_l = 0; the session
  completing is the answer. Logged: {"sid", "signers", "column", "ok"} per session.
- `withhold`: run signing honestly up to the round-3 shares, then send nothing (and post nothing), so
  the request stays open for the honest party to be restarted and asked again with the same session
  id.

Re-setups are logged as {"resetup": peer, "public_key": hex}: after one, what was learnt no longer
applies. So are refresh commits (one entry per party: a refresh gives every pair new base OTs).
Key generation, re-setups and refreshes run unchanged (the real code).
"""

from __future__ import annotations

import json
import os
import sys
import threading

from appliance.cli.main import main
from appliance.mpc_party import daemon, lifecycle, pairguard
from appliance.mpc_party.protocols import dispatch
from appliance.mpc_party.protocols.dkls23 import mul
from tests.attacks import flipping_extend

STRATEGY = os.environ.get("ZRKEYRING_EVIL", "")
LOG_PATH = os.environ.get("ZRKEYRING_EVIL_LOG", "")
_lock = threading.Lock()
_local = threading.local()
_counter = [0]


def _log(entry: dict) -> None:
    with _lock, open(LOG_PATH, "a") as out:
        out.write(json.dumps(entry) + "\n")


def _install_bitflip() -> None:
    mul.receiver_extend = flipping_extend(lambda: getattr(_local, "column", 0))
    honest_sign = daemon.PartyDaemon._sign

    def sign(self, job, sid, mpc_btl):
        if job.key_type == "KEY_TYPE_EDDSA_ED25519":
            return honest_sign(self, job, sid, mpc_btl)
        with _lock:
            column = _counter[0] % 128
            _counter[0] += 1
        _local.column = column
        entry = {"sid": sid.hex(), "signers": list(job.signers), "column": column,
                 "public_key": job.public_key.hex()}
        try:
            result = honest_sign(self, job, sid, mpc_btl)
        except BaseException:
            _log({**entry, "ok": False})
            raise
        _log({**entry, "ok": True})
        return result

    daemon.PartyDaemon._sign = sign


def _install_withhold() -> None:
    def after_round2(self):
        self._presig = self.session.finish()
        self._presig.round3(self.digest)  # computed, never sent
        _log({"withheld": self.session.session_id.hex()})
        return []

    dispatch.DklsSignSession._after_round2 = after_round2
    dispatch.DklsSignSession._combine_if_complete = lambda self: None  # and never posts a signature


def _log_resetups() -> None:
    honest_store = pairguard.PairGuard._store

    def store(self, record, new, peer):
        honest_store(self, record, new, peer)
        _log({"resetup": peer, "public_key": new.public_key.hex()})

    pairguard.PairGuard._store = store
    honest_commit = lifecycle.Refresher._commit

    def commit(self, run, record, outcome):  # a refresh gives every pair of the key new base OTs too
        done = honest_commit(self, run, record, outcome)
        for peer in (1, 2, 3):
            _log({"resetup": peer, "public_key": run.public_key.hex()})
        return done

    lifecycle.Refresher._commit = commit


if __name__ == "__main__":
    {"bitflip": _install_bitflip, "withhold": _install_withhold}[STRATEGY]()
    _log_resetups()
    sys.exit(main(sys.argv[1:]))
