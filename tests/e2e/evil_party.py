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

- `keygen-one`: in key generation (the holdings exchange, the keygen rounds and the confirmation),
  toward one honest party only, send a corrupted copy (`bad`) of each message of one round, none
  (`none`), or (Ed25519 DKG round 1) valid commitments of another polynomial (`twin`: equivocation);
  every other party gets the honest message. What to do is read before every message from the file
  ZRKEYRING_EVIL_CONTROL, one line `bad|none|twin VICTIM PROTOCOL ROUND` (empty: honest), so one
  daemon can play every round in turn. Logged: {"keygen": mode, "victim", "protocol", "round"}.

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
from appliance.mpc_party import daemon, lifecycle, pairguard, runner
from appliance.mpc_party.protocols import dispatch, dkg
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

    def sign(self, job, sid, mpc_btl, peer=None):
        if job.key_type == "KEY_TYPE_EDDSA_ED25519":
            return honest_sign(self, job, sid, mpc_btl, peer)
        with _lock:
            column = _counter[0] % 128
            _counter[0] += 1
        _local.column = column
        entry = {"sid": sid.hex(), "signers": list(job.signers), "column": column,
                 "public_key": job.public_key.hex()}
        try:
            result = honest_sign(self, job, sid, mpc_btl, peer)
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


KEYGEN_PROTOCOLS = ("dkg-ed25519", "dkls23-keygen", "keygen-confirm", "keygen-holdings")


def _keygen_fault(protocol: str, round_: int) -> tuple[str, int] | None:
    """(mode, victim) when the control file says to cheat on this protocol and round."""
    try:
        words = open(os.environ["ZRKEYRING_EVIL_CONTROL"]).read().split()
    except (KeyError, OSError):
        return None
    if len(words) == 4 and words[2] == protocol and int(words[3]) == round_:
        return words[0], int(words[1])
    return None


def _twin_commitments(session) -> bytes:
    """Round-1 commitments of another, valid polynomial (a proper equivocation: each copy passes its
    proof of knowledge; only the echo shows the views differ)."""
    party = session.party  # the Ed25519 DKG session (dispatch.keygen_session)
    twin = dkg.DkgParty(party.group, party.session_id, party.party_id, party.n, party.t,
                        participants=party.participants)
    return twin.round1().to_bytes()


def _install_keygen_one() -> None:
    """Split every keygen message per recipient, so one victim can get another (or no) message."""
    honest_emit = runner.SessionRunner._emit

    def emit(self, session_id, session, outgoing, deadline):
        if session.protocol not in KEYGEN_PROTOCOLS:
            return honest_emit(self, session_id, session, outgoing, deadline)
        for out in outgoing:
            fault = _keygen_fault(session.protocol, out.round)
            targets = session.peers if out.recipient == runner.BROADCAST else (out.recipient,)
            if fault is None or fault[1] not in targets:
                honest_emit(self, session_id, session, [out], deadline)
                continue
            mode, victim = fault
            _log({"keygen": mode, "victim": victim, "protocol": session.protocol, "round": out.round})
            others = [t for t in targets if t != victim]
            if others:
                env = self.outbox.seal(session_id, session.protocol, out.round, out.recipient, out.payload)
                for target in others:
                    self._pool.submit(self._deliver, target, env, deadline)
            if mode in ("bad", "twin"):
                payload = _twin_commitments(session) if mode == "twin" else \
                    out.payload[:-1] + bytes([out.payload[-1] ^ 1])  # flip the last bit
                env = self.outbox.seal(session_id, session.protocol, out.round, victim, payload)
                self._pool.submit(self._deliver, victim, env, deadline)

    runner.SessionRunner._emit = emit


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
    {"bitflip": _install_bitflip, "withhold": _install_withhold, "keygen-one": _install_keygen_one}[STRATEGY]()
    _log_resetups()
    sys.exit(main(sys.argv[1:]))
