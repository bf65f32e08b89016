"""AgreeingReader: the chain's answer is what k of m independent nodes say, at heights they call committed.

One node (or anyone on the path to it) can invent a PENDING request; k nodes run by different people
would all have to. The reader asks every endpoint separately (one client each, no failover between
them), and accepts an answer only if at least k endpoints return identical request data, each with the
height it answered at (the `x-cosmos-block-height` header). It serves the three queries a party's
chain check reads: `key_request`, `sign_request`, `key`.

"Identical" compares the fields a request is created with (ids, creator, workspace, keyring, key type,
key ids, data to sign, fee, lifetime) plus whether it is still open; the fields later blocks fill in
(status PENDING -> PARTIAL, party signatures, results, reject reason) may differ between nodes a block
apart. An absent answer or a different status may be a node that is behind, so while no answer has k
votes the reader asks again for up to `wait_s`; an answer that differs in a creation field is refused
at once. Every disagreement (even one outvoted by k agreeing nodes) is reported to `on_disagreement`
so an operator is alerted: an honest node never disagrees on those fields.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from chain_client.client import ChainClient
from chain_client.errors import ChainDisagreement, ChainError

log = logging.getLogger("chain_client.agreement")

# Fields later blocks change; they are left out of the comparison (status is reduced to open/closed).
MUTABLE_FIELDS = {
    "key_request": ("status", "keyring_party_signatures", "reject_reason", "public_key"),
    "sign_request": ("status", "signed_data", "keyring_party_sigs", "reject_reason"),
    "key": (),
}
OPEN_SUFFIXES = ("_PENDING", "_PARTIAL")


@dataclass(frozen=True)
class Answer:
    """What one endpoint said: `found` is None for "no such object", `error` is set if it did not answer."""

    endpoint: str
    height: int | None = None
    found: Message | None = None
    error: str = ""

    @property
    def answered(self) -> bool:
        return not self.error

    def fingerprint(self, query: str) -> bytes:
        """Canonical bytes of the compared fields (b"" for an absent object)."""
        return b"" if self.found is None else comparable(query, self.found)

    def describe(self, query: str) -> str:
        if self.error:
            return f"{self.endpoint}: no answer ({self.error})"
        if self.found is None:
            return f"{self.endpoint} at height {self.height}: absent"
        return f"{self.endpoint} at height {self.height}: {summary(query, self.found)}"


def comparable(query: str, message: Message) -> bytes:
    """Deterministic bytes of `message` without its mutable fields, plus an open/closed marker."""
    copy = type(message)()
    copy.CopyFrom(message)
    status = getattr(message, "status", "")
    for name in MUTABLE_FIELDS[query]:
        copy.ClearField(name)
    marker = b"open" if str(status).endswith(OPEN_SUFFIXES) else b"closed:" + str(status).encode()
    return len(marker).to_bytes(2, "big") + marker + copy.SerializeToString(deterministic=True)


def summary(query: str, message: Message) -> str:
    """A short, readable form of the compared fields, for refusal messages and logs."""
    parts = []
    for descriptor, value in message.ListFields():
        if descriptor.name in MUTABLE_FIELDS[query] and descriptor.name != "status":
            continue
        parts.append(f"{descriptor.name}={_short(value)}")
    return ", ".join(parts) or "(empty)"


def _short(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()[:16] + ("…" if len(value) > 8 else "")
    if isinstance(value, str | int):
        return str(value)[:48]
    try:
        return "[" + ", ".join(_short(v) for v in value) + "]"
    except TypeError:
        return type(value).__name__


def differing_fields(query: str, answers: Sequence[Answer]) -> list[str]:
    """Names of the compared fields whose values are not the same in every present answer."""
    present = [a.found for a in answers if a.answered and a.found is not None]
    names: set[str] = set()
    for message in present:
        names |= {d.name for d, _ in message.ListFields()}
    if any(a.answered and a.found is None for a in answers) and present:
        names.add("existence")
    differing = []
    for name in sorted(names):
        if name == "existence":
            differing.append(name)
            continue
        if name in MUTABLE_FIELDS[query] and name != "status":
            continue
        values = set()
        for message in present:
            value = getattr(message, name)
            if name == "status":
                value = str(value).endswith(OPEN_SUFFIXES)
            values.add(value.SerializeToString() if isinstance(value, Message) else repr(value))
        if len(values) > 1:
            differing.append("status (open or not)" if name == "status" else name)
    return differing


class AgreeingReader:
    """k-of-m chain reader over one ChainClient per endpoint; answers like ChainClient or raises
    ChainDisagreement."""

    def __init__(self, clients: Sequence[ChainClient], agree: int, wait_s: float = 3.0, poll_s: float = 0.2,
                 on_disagreement: Callable[[str, ChainDisagreement], None] | None = None) -> None:
        if not 1 <= agree <= len(clients):
            raise ValueError(f"agree = {agree} needs between 1 and {len(clients)} endpoints")
        for client in clients:
            if len(client.config.endpoints) != 1:
                raise ValueError("each client of an AgreeingReader must have exactly one endpoint")
        self.clients = list(clients)
        self.agree, self.wait_s, self.poll_s = agree, wait_s, poll_s
        self.on_disagreement = on_disagreement
        self._pool = ThreadPoolExecutor(max_workers=len(self.clients), thread_name_prefix="chain-agree")

    @property
    def endpoints(self) -> list[str]:
        return [client.config.endpoints[0] for client in self.clients]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in self.clients:
            client.close()

    def key_request(self, request_id: int):
        return self._agreed("key_request", f"key request {request_id}", lambda c: c.key_request_at(request_id))

    def sign_request(self, request_id: int):
        return self._agreed("sign_request", f"signature request {request_id}",
                            lambda c: c.sign_request_at(request_id))

    def key(self, key_id: int):
        return self._agreed("key", f"key {key_id}", lambda c: c.key_at(key_id))

    # --- the vote ----------------------------------------------------------------------------------

    def _ask(self, client: ChainClient, query: Callable[[ChainClient], tuple[Any, int | None]]) -> Answer:
        endpoint = client.config.endpoints[0]
        try:
            found, height = query(client)
        except ChainError as exc:
            return Answer(endpoint, error=str(exc)[:200])
        except grpc.RpcError as exc:  # not a "not found" in either form: no answer
            return Answer(endpoint, error=f"{exc.code().name}: {exc.details()}"[:200])
        if height is None:
            return Answer(endpoint, error="no committed height in its answer (x-cosmos-block-height)")
        return Answer(endpoint, height, found)

    def _round(self, query: Callable[[ChainClient], tuple[Any, int | None]]) -> list[Answer]:
        return list(self._pool.map(lambda c: self._ask(c, query), self.clients))

    def _agreed(self, kind: str, what: str, query: Callable[[ChainClient], tuple[Any, int | None]]):
        deadline = time.monotonic() + self.wait_s
        while True:
            answers = self._round(query)
            winner, conflict = self._count(kind, answers)
            final = winner is not None or conflict or time.monotonic() >= deadline
            if final:
                break
            time.sleep(self.poll_s)
        if winner is None:
            error = self._disagreement(kind, what, answers, decided=False)
            self._report(kind, error)
            raise error
        if conflict:  # outvoted, but an honest node never says this: tell the operator
            error = self._disagreement(kind, what, answers, decided=True)
            self._report(kind, error)
            log.warning("%s; going with the %d agreeing endpoints", error, self.agree)
        return winner.found

    def _report(self, kind: str, error: ChainDisagreement) -> None:
        if self.on_disagreement is not None:
            self.on_disagreement(kind, error)

    def _count(self, kind: str, answers: Sequence[Answer]) -> tuple[Answer | None, bool]:
        """(an answer with at least k identical votes, whether two present answers conflict in a
        creation field, which waiting cannot mend)."""
        votes: list[tuple[bytes, list[Answer]]] = []
        for answer in (a for a in answers if a.answered):
            key = answer.fingerprint(kind)
            for fingerprint, group in votes:
                if hmac.compare_digest(fingerprint, key):
                    group.append(answer)
                    break
            else:
                votes.append((key, [answer]))
        winners = [group for _, group in votes if len(group) >= self.agree]
        present = {comparable_creation(kind, a.found) for a in answers if a.answered and a.found is not None}
        conflict = len(present) > 1
        if len(winners) == 1:
            return winners[0][0], conflict
        return None, conflict or len(winners) > 1

    def _disagreement(self, kind: str, what: str, answers: Sequence[Answer], decided: bool) -> ChainDisagreement:
        answered = sum(a.answered for a in answers)
        differing = differing_fields(kind, answers)
        if answered < self.agree:
            reason = f"only {answered} of {len(answers)} chain endpoints answered, {self.agree} must agree"
        else:
            reason = f"chain endpoints disagree ({self.agree} of {len(answers)} must return identical data)"
        if differing:
            reason += f"; differing: {', '.join(differing)}"
        details = "; ".join(a.describe(kind) for a in answers)
        return ChainDisagreement(f"{what}: {reason}: {details}", endpoints=[a.endpoint for a in answers],
                                 differing=differing, decided=decided)


def comparable_creation(kind: str, message: Message) -> bytes:
    """Like `comparable` but without the open/closed marker: fields no later block may change."""
    copy = type(message)()
    copy.CopyFrom(message)
    for name in MUTABLE_FIELDS[kind]:
        copy.ClearField(name)
    return copy.SerializeToString(deterministic=True)
