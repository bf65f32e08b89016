"""One uniform face for every protocol, so the party daemon can run any of them over a transport.

Each protocol package exposes its own round methods (`round1`, `receive`, `round2`, ...). A `Session`
wraps one party's state machine and steps it by itself: `start()` returns the first messages to send,
and `receive(sender, payload)` feeds one authenticated peer message and returns whatever the state
machine is now ready to send. When the protocol has finished, `done` is true and `result()` returns
the output. Still sans-IO: the transport, timers and storage live in the daemon.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appliance.mpc_party.protocols.dkg import DkgParty, DkgState, KeyShare, decode_dkg_message
from appliance.mpc_party.protocols.frost import Ciphersuite, FrostSigner, SignState, decode_frost_message
from appliance.mpc_party.protocols.group import Rng, default_rng

BROADCAST = 0


@dataclass(frozen=True)
class Outgoing:
    """A message to send: to one party, or to every other participant when `recipient` is 0."""

    recipient: int
    round: int
    payload: bytes


class Session(ABC):
    """One party's run of one protocol; see the module docstring."""

    protocol: str
    me: int
    participants: tuple[int, ...]

    @abstractmethod
    def start(self) -> list[Outgoing]: ...

    @abstractmethod
    def receive(self, sender: int, payload: bytes) -> list[Outgoing]: ...

    @property
    @abstractmethod
    def done(self) -> bool: ...

    @abstractmethod
    def result(self) -> Any: ...

    @abstractmethod
    def waiting_for(self) -> list[int]:
        """Peers whose messages the current step still needs (for timeouts and blame)."""

    @property
    @abstractmethod
    def current_round(self) -> int:
        """The round whose messages the session is waiting for (matches `Outgoing.round`)."""

    @property
    def peers(self) -> tuple[int, ...]:
        return tuple(p for p in self.participants if p != self.me)


class DkgSession(Session):
    """Generic DKG (and refresh): commitments → echo + shares → key share."""

    def __init__(self, party: DkgParty, protocol: str) -> None:
        self.party, self.protocol = party, protocol
        self.me = party.party_id
        self.participants = party.participants
        self._result: KeyShare | None = None

    def start(self) -> list[Outgoing]:
        return [Outgoing(BROADCAST, 1, self.party.round1().to_bytes())]

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        self.party.receive(decode_dkg_message(self.party.group, payload, sender))
        return self._advance()

    def _advance(self) -> list[Outgoing]:
        missing = self.party.missing()
        out: list[Outgoing] = []
        if self.party.state is DkgState.WAITING_ROUND1 and not missing["commitments"]:
            echo, shares = self.party.round2()
            out.append(Outgoing(BROADCAST, 2, echo.to_bytes()))
            out += [Outgoing(s.recipient, 2, s.to_bytes()) for s in shares]
        if self.party.state is DkgState.WAITING_ROUND2 and not missing["echoes"] and not missing["shares"]:
            self._result = self.party.finish()
        return out

    @property
    def done(self) -> bool:
        return self._result is not None

    def result(self) -> KeyShare:
        assert self._result is not None, "DKG not finished"
        return self._result

    @property
    def current_round(self) -> int:
        return 1 if self.party.state in (DkgState.ROUND1, DkgState.WAITING_ROUND1) else 2

    def waiting_for(self) -> list[int]:
        missing = self.party.missing()
        if self.party.state is DkgState.WAITING_ROUND1:
            return missing["commitments"]
        return sorted(set(missing["echoes"]) | set(missing["shares"]))


class FrostSignSession(Session):
    """FROST signing: commitments → signature shares → signature (every signer aggregates)."""

    def __init__(self, suite: Ciphersuite, share: KeyShare, session_id: bytes, signers: Sequence[int],
                 message: bytes, rng: Rng = default_rng) -> None:
        self.signer = FrostSigner(suite, share, session_id, list(signers), message, rng)
        # Protocol label from the suite's context string, e.g. "frost-ed25519-sha512-v1" (<= 32 chars).
        self.suite, self.protocol = suite, suite.context.decode().lower()
        self.me, self.participants = share.party_id, tuple(sorted(signers))
        self._signature: bytes | None = None

    def start(self) -> list[Outgoing]:
        return [Outgoing(BROADCAST, 1, self.signer.commit().to_bytes())]

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        self.signer.receive(decode_frost_message(self.suite.group, payload, sender))
        missing = self.signer.missing()
        out: list[Outgoing] = []
        if self.signer.state is SignState.WAITING_COMMITMENTS and not missing["commitments"]:
            out.append(Outgoing(BROADCAST, 2, self.signer.sign().to_bytes()))
        if self.signer.state is SignState.WAITING_SHARES and not missing["shares"]:
            self._signature = self.signer.aggregate()
        return out

    @property
    def done(self) -> bool:
        return self._signature is not None

    def result(self) -> bytes:
        assert self._signature is not None, "signing not finished"
        return self._signature

    @property
    def current_round(self) -> int:
        return 1 if self.signer.state in (SignState.COMMIT, SignState.WAITING_COMMITMENTS) else 2

    def waiting_for(self) -> list[int]:
        missing = self.signer.missing()
        if self.signer.state is SignState.WAITING_COMMITMENTS:
            return missing["commitments"]
        return missing["shares"]


def run_in_process(sessions: Sequence[Session]) -> list[Any]:
    """Drive sessions of all participants in one process (tests, demo): deliver every message until
    all are done. Messages pass as bytes, exactly as over a transport."""
    by_id = {s.me: s for s in sessions}
    queue: list[tuple[int, Outgoing]] = [(s.me, o) for s in sessions for o in s.start()]
    while queue:
        sender, out = queue.pop(0)
        targets = [p for p in by_id[sender].participants if p != sender] if out.recipient == BROADCAST \
            else [out.recipient]
        for target in targets:
            queue += [(target, o) for o in by_id[target].receive(sender, out.payload)]
    unfinished = [s.me for s in sessions if not s.done]
    if unfinished:
        raise RuntimeError(f"sessions of parties {unfinished} did not finish")
    return [s.result() for s in sessions]
