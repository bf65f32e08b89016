"""Joining a signing session a peer opened: the hello, and the bounded pool that acts on it.

Why. Each controller schedules its own party's jobs. Under a backlog the members of a quorum reach a
request at different times (each sees it at its own poll, each queue is its own), so a session one
member opened waited for a partner whose controller was busy with other jobs, while that partner's
own sessions waited for others: with every job slot of every controller holding such a wait the
keyring delivered a fraction of its capacity (docs/performance.md, "Joining a peer's session").

What. A party whose signing envelope a peer answers with `session_not_open` sends it a *hello*: one
envelope, signed like every other, naming (request id, attempt, retry, signer set). That is all a
party needs to recompute the session id (rules/attempts.session_id); the rest of the job (key, data)
it reads from the chain itself. The receiving party joins only if

- the hello's fields give exactly the envelope's session id, the sender and this party are signers;
- the request is open on chain, for one key of this keyring, of its type, with no signature on chain
  yet, and passes every rule its own controller applies (rules/requests.plan_sign, ICA included);
- the job then passes the checks of any job from its own controller (daemon.run_job: the chain
  check, the signer set against the key's holders, the attempt window, MAX_SIGNER_SETS per request
  and attempt, the durable session claim: a session id never runs twice).

So a peer can make this party sign only what the chain asked of this keyring, with a signer set its
own controller could have chosen, and no more sessions per request than its controller could start.
When the controller later asks for the same job, it gets the same session's result (daemon.run_job
keeps results by session id); for another signer set of the same request it gets the signature
already made (PartyState.signature_of). A party that has the request's signature already (it signed
in another session, or it is on chain) answers a hello with a *result note* carrying it: the opener
verifies it under the key (rules/verify.py) and ends its session with it instead of waiting out the
join timeout for round messages that will never come.

The pool is bounded (`[party] join_workers`): a hello beyond it waits in a short queue and is dropped
once older than the opener's join timeout (its opener has given up by then); a hello is acted on once
per session id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from appliance.mpc_party import metrics
from appliance.mpc_party.envelope import Envelope
from appliance.mpc_party.protocols.hello import HELLO_PROTOCOL, Hello, HelloError
from appliance.rules.attempts import session_id

log = logging.getLogger("zrkeyring.party")

SEEN_KEPT = 8192  # session ids whose hello was acted on (a peer re-sends its hello while we do not answer)
QUEUE_PER_WORKER = 4  # hellos waiting for a free worker, per worker


class JoinRefused(Exception):
    """The hello's request fails this party's own rules: nothing is run."""


class JoinAnswered(Exception):
    """Nothing to run: this party had the request's signature already and sent it to the opener."""


def hello_session_id(hello: Hello, chain_id: str, keyring: str) -> bytes:
    """The signing session id the hello's fields make (rules/attempts.session_id)."""
    return session_id(chain_id, keyring, "sign", hello.request_id, hello.attempt, hello.signers, hello.retry)


def parse_hello(env: Envelope, me: int, chain_id: str, keyring: str) -> Hello:
    """The hello in `env` (an authenticated envelope), if it names exactly `env`'s session with the
    sender and us among the signers; HelloError otherwise."""
    hello = Hello.decode(env.payload)
    if env.sender not in hello.signers or me not in hello.signers:
        raise HelloError(f"signers {list(hello.signers)} do not include party {env.sender} and party {me}")
    if hello_session_id(hello, chain_id, keyring) != env.session_id:
        raise HelloError("hello names another session")
    return hello


JoinFn = Callable[[Hello, int], None]  # (hello, sender): check and run the job; raise to refuse


class PeerJoiner:
    """The gate hook for hellos and the bounded pool that runs the joined jobs."""

    def __init__(self, me: int, chain_id: str, keyring: str, join: JoinFn, workers: int, max_age_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.me, self.chain_id, self.keyring, self._join = me, chain_id, keyring, join
        self.enabled = workers > 0
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="peer-join")
        self._max_queued = max(1, workers) * (1 + QUEUE_PER_WORKER)
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._pending = 0  # queued or running

    def on_unopened(self, env: Envelope) -> None:
        """Gate hook (outside the gate's lock): act on a hello for a session not open here."""
        if env.protocol != HELLO_PROTOCOL or not self.enabled:
            return
        try:
            hello = parse_hello(env, self.me, self.chain_id, self.keyring)
        except HelloError as exc:
            log.warning("party %d ignores a hello from party %d: %s", self.me, env.sender, exc,
                        extra={"peer": env.sender})
            metrics.PEER_JOINS.labels("invalid").inc()
            return
        with self._lock:
            if env.session_id in self._seen:
                return
            if self._pending >= self._max_queued:
                busy = True
            else:
                busy = False
                self._seen[env.session_id] = None
                while len(self._seen) > SEEN_KEPT:
                    self._seen.popitem(last=False)
                self._pending += 1
        if busy:  # not remembered: the opener's next hello may find room
            metrics.PEER_JOINS.labels("busy").inc()
            return
        self._pool.submit(self._run, hello, env.sender, self._clock())

    def _run(self, hello: Hello, sender: int, arrived: float) -> None:
        extra = {"request_id": hello.request_id, "peer": sender}
        try:
            if self._clock() - arrived > self._max_age_s:  # the opener gave the session up by now
                metrics.PEER_JOINS.labels("stale").inc()
                return
            self._join(hello, sender)
            metrics.PEER_JOINS.labels("joined").inc()
        except JoinAnswered:
            metrics.PEER_JOINS.labels("answered").inc()
        except JoinRefused as exc:
            metrics.PEER_JOINS.labels("refused").inc()
            log.info("party %d refuses to join party %d's session of sign request %d attempt %d: %s", self.me,
                     sender, hello.request_id, hello.attempt, exc, extra=extra)
        except Exception as exc:  # noqa: BLE001 - a failed join is logged, never raised into the pool
            metrics.PEER_JOINS.labels("failed").inc()
            log.info("party %d: joined session of party %d (sign request %d attempt %d) failed: %s", self.me,
                     sender, hello.request_id, hello.attempt, exc, extra=extra)
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
