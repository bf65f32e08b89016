"""Helpers of the availability tests (issue 14): signing many requests and checking every answer."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.local.e2e_demo import verify_independently
from appliance.local.localnet import LocalKeyring, LocalSettings

KEY_TYPES = ("ecdsa", "bitcoin", "ed25519")


def shipped_timing(parties: int = 3, threshold: int = 2) -> LocalSettings:
    """zrChain's shipped request lifetime (20 blocks) and attempt length (10 blocks), at 1 s blocks."""
    return LocalSettings(parties=parties, threshold=threshold, block_time=1.0, default_btl=20,
                         attempt_blocks=10, round_timeout_s=3.0)


def lifetime_s(settings: LocalSettings) -> float:
    return settings.default_btl * settings.block_time


def running(tmp_path_factory, name: str, settings: LocalSettings) -> Iterator[LocalKeyring]:
    """A module fixture's body: a started keyring, closed afterwards."""
    keyring = LocalKeyring(tmp_path_factory.mktemp(name), settings).setup().start()
    try:
        yield keyring
    finally:
        keyring.close()


def sign_data(key_type: str) -> bytes:
    return secrets.token_bytes(32) if key_type != "ed25519" else b"party down " + secrets.token_bytes(8)


@dataclass
class Asked:
    """One signature request: what was asked, when it was included, how it ended."""

    key_type: str
    public_key: bytes
    data: bytes
    request_id: int
    included_at: float  # monotonic, right after the creating tx was included
    closed_at: float | None = None
    final: object = None

    @property
    def latency(self) -> float:
        assert self.closed_at is not None
        return self.closed_at - self.included_at


def make_keys(net: LocalKeyring, types: tuple[str, ...] = KEY_TYPES, timeout_s: float = 90.0) -> dict:
    """One fulfilled key of each type (all parties up): {name: chain Key}."""
    keys = {}
    for key_type in types:
        for tries_left in (2, 1, 0):  # a key request that timed out on a loaded machine is asked again
            request_id = net.request_key(key_type)
            try:
                net.wait_request("key", request_id, timeout_s=timeout_s)
                break
            except RuntimeError as exc:
                if "timed out" not in str(exc) or not tries_left:
                    raise
        keys[key_type] = net.key_for_request(request_id)
    return keys


def ask(net: LocalKeyring, key_type: str, key, count: int) -> list[Asked]:
    """`count` signature requests with one key in one transaction."""
    datas = [sign_data(key_type) for _ in range(count)]
    ids = net.request_signatures(key.id, datas)
    now = time.monotonic()
    return [Asked(key_type, bytes(key.public_key), d, i, now) for d, i in zip(datas, ids, strict=True)]


def poll_once(net: LocalKeyring, asked: list[Asked]) -> int:
    """Read every still-open request once; note when it closed. Returns how many are still open."""
    assert net.client is not None
    open_now = 0
    for item in asked:
        if item.final is not None:
            continue
        req = net.client.sign_request(item.request_id)
        if req is not None and req.status.endswith(("FULFILLED", "REJECTED")):
            item.closed_at, item.final = time.monotonic(), req
        else:
            open_now += 1
    return open_now


def wait_all(net: LocalKeyring, asked: list[Asked], timeout_s: float) -> None:
    """Poll until every request is closed (FULFILLED or REJECTED) or the time is up."""
    deadline = time.monotonic() + timeout_s
    while poll_once(net, asked) and time.monotonic() < deadline:
        time.sleep(0.05)


def check_all_fulfilled(asked: list[Asked]) -> list[float]:
    """Every request FULFILLED, its signature verified by an independent library, no party twice;
    returns the latencies (inclusion of the request to FULFILLED seen)."""
    problems = []
    for item in asked:
        req = item.final
        if req is None:
            problems.append(f"request {item.request_id} ({item.key_type}) still open")
            continue
        if not req.status.endswith("FULFILLED"):
            problems.append(f"request {item.request_id} ({item.key_type}) {req.status}: {req.reject_reason}")
            continue
        verify_independently(item.key_type, item.public_key, item.data, bytes(req.signed_data[0].signed_data))
        creators = [s.creator for s in req.keyring_party_sigs]
        assert len(creators) == len(set(creators)), f"request {item.request_id}: a party posted twice"
    assert not problems, f"{len(problems)} of {len(asked)} not fulfilled: {problems[:5]}"
    return [item.latency for item in asked]


def wait_live(net: LocalKeyring, index: int, expected: set[int], timeout_s: float = 20.0) -> None:
    """Until party `index` sees exactly `expected` live."""
    deadline = time.monotonic() + timeout_s
    while True:
        live = set(net.party_status(index)["live"])
        if live == expected:
            return
        assert time.monotonic() < deadline, f"party {index} sees {sorted(live)} live, expected {sorted(expected)}"
        time.sleep(0.1)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]
