"""Runs one protocol `Session` over the party transport: the I/O shell around the sans-IO code.

The runner opens the session in the gate (so peers' envelopes are accepted), sends what the session
emits, waits round by round for the peers the session still needs, and feeds their payloads in. Each
round has its own deadline; a round that times out aborts the session naming the silent parties.

Sending is asynchronous and patient: parties start a session when their own controller sees the
request on chain, so a peer may not have opened the session yet. Its gate then answers
`session_not_open` and the runner re-sends the same envelope (same sequence number, so no replay)
until the round deadline.

A peer the liveness view (liveness.py) reports down fails the round at once, naming it, instead of at
the round deadline: the controller can then pick another live quorum within the same attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from appliance.mpc_party.envelope import BROADCAST, DropReason, Envelope, Gate, Outbox
from appliance.mpc_party.protocols.sessions import Outgoing, Session
from appliance.mpc_party.protocols.wire import ProtocolAbort
from appliance.mpc_party.transport import PeerUnavailable

log = logging.getLogger(__name__)

DOWN_CHECK_S = 0.25  # how often a waiting round looks at the liveness view
RESEND_PAUSE_S = 0.02  # first pause before re-sending to a peer that has not opened the session yet
ABANDONED_KEPT = 4096  # session ids given up at the join timeout, remembered so their sends stop
RESEND_PAUSE_MAX_S = 0.1  # the pause doubles up to this: a peer that never opens it costs ~10 sends/s, not 50
HELLO_RESEND_S = 0.5  # a peer still not in the session after this long is sent the session's hello again
SendFn = Callable[[int, Envelope, float], Any]  # PeerClient.send: (party, envelope, timeout) -> Ack
ContactFn = Callable[[int, bool], None]  # (party, reached?) after each delivery attempt, e.g. for metrics
DownFn = Callable[[int], bool]  # is this peer's daemon gone (liveness.Liveness.is_down)?


class SessionTimeout(Exception):
    """A round did not complete in time; `missing` are the parties that stayed silent."""

    def __init__(self, session: str, round_: int, missing: list[int]) -> None:
        self.missing = missing
        super().__init__(f"session {session} round {round_}: no answer from parties {missing}")


class SessionCancelled(Exception):
    """This party gave up a running session on purpose (`SessionRunner.cancel`)."""


@dataclass(frozen=True)
class _Cancelled:
    reason: str


@dataclass
class RunnerConfig:
    round_timeout_s: float = 10.0
    # A signing session whose peers have sent nothing at all this long after it started is given up
    # (0: round_timeout_s). Each controller schedules alone, so under a backlog a quorum partner may
    # have shed the job or be seconds behind; waiting out a whole round for it holds a job slot on
    # both sides, and hundreds of such waits were what collapsed a loaded keyring.
    join_timeout_s: float = 0.0


@dataclass
class _Hello:
    """A running session's announcement and when each peer was last sent it."""

    protocol: str
    round: int
    payload: bytes
    envelope: Envelope | None = None
    sent: dict[int, float] = field(default_factory=dict)


class SessionRunner:
    """Drives sessions for one party; safe to use from several threads at once."""

    def __init__(self, me: int, gate: Gate, outbox: Outbox, send: SendFn,
                 config: RunnerConfig | None = None, pool: ThreadPoolExecutor | None = None,
                 on_contact: ContactFn | None = None, is_down: DownFn | None = None) -> None:
        self.me, self.gate, self.outbox, self._send = me, gate, outbox, send
        self._on_contact = on_contact or (lambda _party, _ok: None)
        self.is_down = is_down  # set by the daemon once its liveness view runs
        self.config = config or RunnerConfig()
        self._pool = pool or ThreadPoolExecutor(max_workers=16, thread_name_prefix="peer-send")
        self._abandoned: dict[bytes, None] = {}  # sessions given up at the join timeout (newest last)
        self._abandon_lock = threading.Lock()
        self._hellos: dict[bytes, _Hello] = {}  # running sessions that announce themselves (join.py)
        self._finished: dict[bytes, Any] = {}  # running sessions given their result another way (`finish`)
        self._running: set[bytes] = set()  # session ids whose `run` has not returned yet
        self._cancel_ahead: dict[bytes, Any] = {}  # outcomes for runs not begun yet (`cancel` ahead; newest last)

    def run(self, session_id: bytes, session: Session, join_timeout: bool = False,
            round_timeout_s: float | None = None, record: list[Envelope] | None = None,
            hello: tuple[str, int, bytes] | None = None) -> Any:
        """Run `session` to completion; returns its result or raises ProtocolAbort / SessionTimeout.
        With `join_timeout`, give up after RunnerConfig.join_timeout_s if no peer has sent anything.
        `round_timeout_s` overrides the configured round deadline (the keygen confirmation waits
        longer, so a peer's abort sent at the end of its own round deadline still arrives).
        `hello` (protocol, round, payload) is sent to a peer that answers `session_not_open`, at most
        every HELLO_RESEND_S, so it can join the session without its controller (join.py)."""
        short = session_id.hex()[:12]
        timeout = self.config.round_timeout_s if round_timeout_s is None else round_timeout_s
        self.gate.open_session(session_id)
        with self._abandon_lock:
            self._running.add(session_id)
            if (early := self._cancel_ahead.pop(session_id, None)) is not None:
                self._finished[session_id] = early
            if hello is not None:
                self._hellos[session_id] = _Hello(*hello)
        try:
            started = time.monotonic()
            deadline = started + timeout
            join_by = started + self.config.join_timeout_s if join_timeout and self.config.join_timeout_s else None
            self._emit(session_id, session, session.start(), deadline)
            round_ = session.current_round
            while not session.done:
                if session_id in self._finished:  # a verified result arrived another way (join.py)
                    result = self._finished.pop(session_id)
                    if isinstance(result, _Cancelled):
                        raise SessionCancelled(f"session {short}: {result.reason}")
                    return result
                if session.current_round != round_:
                    round_ = session.current_round
                    deadline = time.monotonic() + timeout
                waiting = session.waiting_for()
                if not waiting:
                    raise RuntimeError(f"session {short} waits for nobody but is not done")
                until = deadline if join_by is None else min(deadline, join_by)
                remaining = max(0.0, until - time.monotonic())
                if self.is_down is not None:
                    down = sorted(p for p in waiting if self.is_down(p))
                    if down:
                        raise SessionTimeout(short, round_, down)
                    remaining = min(remaining, DOWN_CHECK_S)
                arrival = self.gate.wait_for(session_id, round_, waiting, remaining)
                if arrival.arrived:
                    join_by = None  # a peer has joined: the round deadlines rule from here
                elif join_by is not None and time.monotonic() >= join_by:
                    self._abandon(session_id)
                    raise SessionTimeout(short, round_, sorted(arrival.missing or waiting))
                for sender in sorted(arrival.arrived):
                    for env in arrival.arrived[sender]:
                        if env.protocol != session.protocol:
                            raise ProtocolAbort(f"envelope for protocol {env.protocol!r}, session runs "
                                                f"{session.protocol!r}", sender)
                        if record is not None:
                            record.append(env)  # kept as signed evidence (keygen equivocation)
                        self._emit(session_id, session, session.receive(sender, env.payload), deadline)
                if not arrival.arrived and arrival.missing and time.monotonic() >= deadline:
                    raise SessionTimeout(short, round_, sorted(arrival.missing))
            return session.result()
        finally:
            with self._abandon_lock:
                self._running.discard(session_id)
                self._hellos.pop(session_id, None)
                self._finished.pop(session_id, None)
            self.gate.close_session(session_id)
            self.outbox.forget(session_id)

    def send(self, session_id: bytes, protocol: str, round_: int, payload: bytes, targets: tuple[int, ...],
             timeout_s: float) -> None:
        """Broadcast one payload outside a running session (an ABORT note, its exhibits; a leave note):
        sealed once, delivered to each target until accepted or `timeout_s` passes, even when the
        session was given up at its join timeout (that is exactly when a leave note must go out)."""
        env = self.outbox.seal(session_id, protocol, round_, BROADCAST, payload)
        deadline = time.monotonic() + timeout_s
        for target in targets:
            self._pool.submit(self._deliver, target, env, deadline, False)

    def note(self, session_id: bytes, protocol: str, round_: int, payload: bytes, targets: tuple[int, ...],
             timeout_s: float) -> None:
        """`send` for a session this party never runs again (a result or leave note, join.py): its
        outbox state is dropped once the note is sealed."""
        self.send(session_id, protocol, round_, payload, targets, timeout_s)
        self.outbox.forget(session_id)

    def _emit(self, session_id: bytes, session: Session, outgoing: list[Outgoing], deadline: float) -> None:
        for out in outgoing:
            env = self.outbox.seal(session_id, session.protocol, out.round, out.recipient, out.payload)
            targets = session.peers if out.recipient == BROADCAST else (out.recipient,)
            for target in targets:
                self._pool.submit(self._deliver, target, env, deadline)

    def _deliver(self, target: int, env: Envelope, deadline: float, abandonable: bool = True) -> None:
        """Send until accepted, refused for good, or the round deadline passes. Re-sends to a peer that
        has not opened the session back off (RESEND_PAUSE_S doubling to RESEND_PAUSE_MAX_S): under a
        backlog a peer may open it seconds later or never, and each try is a TLS round trip and a
        signature check on both hosts. A session given up because nobody joined stops sending (a
        session that ended otherwise keeps delivering: a peer may still need our last message); a note
        sent outside the session (`send`, not `abandonable`) goes out regardless."""
        pause = RESEND_PAUSE_S
        while (remaining := deadline - time.monotonic()) > 0 and not (
                abandonable and env.session_id in self._abandoned):
            try:
                ack = self._send(target, env, remaining)
            except PeerUnavailable as exc:
                log.debug("party %d: %s", self.me, exc, extra={"peer": target})
                self._on_contact(target, False)
                time.sleep(min(RESEND_PAUSE_S * 5, max(0.0, deadline - time.monotonic())))
                continue
            self._on_contact(target, True)
            if ack.accepted:
                return
            if ack.reason != DropReason.SESSION_NOT_OPEN.value:
                log.warning("party %d: party %d refused envelope (round %d): %s",
                            self.me, target, env.round, ack.reason,
                            extra={"peer": target, "session_id": env.session_id.hex()})
                return
            self._pool.submit(self._announce, env.session_id, target, deadline)  # not inline: a round trip
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, RESEND_PAUSE_MAX_S)

    def finish(self, session_id: bytes, result: Any) -> bool:
        """End a running session with `result`, which the caller has verified (a peer had signed the
        request already and sent the signature, join.py): its run returns it and sends nothing more.
        False when the session is not running here."""
        return self._end(session_id, result)

    def cancel(self, session_id: bytes, reason: str, ahead: bool = False) -> bool:
        """Stop a running session at once: its `run` raises SessionCancelled and sends nothing more
        (pairguard.py gives way to a peer's re-setup of the same pair; a signer left, daemon.py). With
        `ahead`, a session whose `run` has not begun yet is cancelled when it begins. False when the
        session is not running here (and not `ahead`)."""
        return self._end(session_id, _Cancelled(reason), ahead)

    def _end(self, session_id: bytes, outcome: Any, ahead: bool = False) -> bool:
        """Hand a running session its outcome (its run returns or raises it at its next look) and stop
        its sends; with `ahead`, keep the outcome for a run that has not begun."""
        with self._abandon_lock:
            if session_id not in self._running:
                if not ahead:
                    return False
                self._cancel_ahead[session_id] = outcome
                while len(self._cancel_ahead) > ABANDONED_KEPT:
                    self._cancel_ahead.pop(next(iter(self._cancel_ahead)))
                return True
            self._finished[session_id] = outcome
        self._abandon(session_id)  # our round messages still being re-sent to peers stop
        self.gate.wake(session_id)
        return True

    def _announce(self, session_id: bytes, target: int, deadline: float) -> None:
        """Send the session's hello to `target` (sealed once, on first need), unless it had one within
        HELLO_RESEND_S. The answer does not matter: the target joins, or our resends keep waiting."""
        now = time.monotonic()
        with self._abandon_lock:
            hello = self._hellos.get(session_id)
            if hello is None or now - hello.sent.get(target, float("-inf")) < HELLO_RESEND_S:
                return
            hello.sent[target] = now
        if hello.envelope is None:  # two threads may both seal it: the same payload, either is fine
            hello.envelope = self.outbox.seal(session_id, hello.protocol, hello.round, BROADCAST, hello.payload)
        try:
            self._send(target, hello.envelope, max(0.0, deadline - time.monotonic()))
        except PeerUnavailable as exc:
            log.debug("party %d: hello not delivered: %s", self.me, exc, extra={"peer": target})

    def _abandon(self, session_id: bytes) -> None:
        with self._abandon_lock:
            self._abandoned[session_id] = None
            while len(self._abandoned) > ABANDONED_KEPT:
                self._abandoned.pop(next(iter(self._abandoned)))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
