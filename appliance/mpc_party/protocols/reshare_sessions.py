"""Resharing behind the daemon's `Session` face, per zrChain key type.

    KEY_TYPE_EDDSA_ED25519                              -> generic resharing over Ed25519 (FROST keys)
    KEY_TYPE_ECDSA_SECP256K1, KEY_TYPE_BITCOIN_SECP256K1 -> DKLs23 resharing (shares + OT set-ups)

Both drivers expose the same small surface (`advance`, `receive`, `waiting_for`, `round`, `done`,
`result`), so one `ReshareSession` adapts either. The result is the new share (a `KeyShare` or a
`Dkls23Key`), or None for a dealer that leaves the set.
"""

from __future__ import annotations

from typing import Any

from appliance.mpc_party.protocols.dkg import KeyShare
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.dkls23.reshare import DklsReshareParty, decode_dkls_reshare_message
from appliance.mpc_party.protocols.group import ED25519, SECP256K1, Group, Rng
from appliance.mpc_party.protocols.reshare import (
    ReshareMessage,
    ReshareOutcome,
    ReshareParty,
    ReshareSpec,
    decode_reshare_message,
)
from appliance.mpc_party.protocols.sessions import BROADCAST, Outgoing, Session
from appliance.mpc_party.protocols.wire import LocalProtocolError

EDDSA = "KEY_TYPE_EDDSA_ED25519"
ECDSA_TYPES = ("KEY_TYPE_ECDSA_SECP256K1", "KEY_TYPE_BITCOIN_SECP256K1")


class GenericReshareDriver:
    """`ReshareParty` stepped one round at a time: 1 deals, 2 echo, 3 finish (no messages)."""

    def __init__(self, spec: ReshareSpec, me: int, old: KeyShare | None, rng: Rng, epoch: int = 0) -> None:
        self.party = ReshareParty(spec, me, old, rng, epoch=epoch)
        self.round = 0
        self.outcome: ReshareOutcome | None = None

    def receive(self, msg: ReshareMessage) -> None:
        self.party.receive(msg)

    def waiting_for(self) -> list[int]:
        missing = self.party.missing()
        if self.round == 1:
            return sorted(set(missing["deals"]) | set(missing["subshares"]))
        return missing["echoes"] if self.round == 2 else []

    def ready(self) -> bool:
        return not self.done and not self.waiting_for()

    def step(self) -> list[ReshareMessage]:
        self.round += 1
        if self.round == 1:
            return self.party.round1()
        if self.round == 2:
            return [self.party.round2()]
        self.outcome = self.party.finish()
        return []

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def result(self) -> KeyShare | None:
        assert self.outcome is not None
        return self.outcome.share


class ReshareSession(Session):
    """One participant's resharing of one key (any key type), for the session runner."""

    def __init__(self, driver: Any, decode: Any, protocol: str, spec: ReshareSpec, me: int) -> None:
        self.driver, self._decode, self.protocol = driver, decode, protocol
        self.me, self.participants = me, spec.participants

    def _advance(self) -> list[Outgoing]:
        out: list[Outgoing] = []
        while self.driver.ready():  # one round at a time, so each Outgoing names its round
            msgs = self.driver.step()
            out += [Outgoing(BROADCAST if m.BROADCAST else m.recipient, self.driver.round, m.to_bytes())
                    for m in msgs]
        return out

    def start(self) -> list[Outgoing]:
        return self._advance()

    def receive(self, sender: int, payload: bytes) -> list[Outgoing]:
        self.driver.receive(self._decode(payload, sender))
        return self._advance()

    @property
    def done(self) -> bool:
        return self.driver.done

    def result(self) -> KeyShare | Dkls23Key | None:
        return self.driver.result()

    @property
    def current_round(self) -> int:
        """The round whose messages we wait for: the last one we produced (1 before we started)."""
        return max(1, self.driver.round)

    def waiting_for(self) -> list[int]:
        return [] if self.driver.done else self.driver.waiting_for()


def _group_of(key_type: str) -> Group:
    if key_type == EDDSA:
        return ED25519
    if key_type in ECDSA_TYPES:
        return SECP256K1
    raise LocalProtocolError(f"unsupported key type {key_type!r}")


def reshare_session(key_type: str, spec: ReshareSpec, me: int, old: KeyShare | Dkls23Key | None,
                    rng: Rng) -> Session:
    """The resharing session of one key for party `me` (`old` is None for a joining party)."""
    if spec.group is not _group_of(key_type):
        raise LocalProtocolError(f"resharing spec over {spec.group.name} for a {key_type} key")
    if key_type == EDDSA:
        if old is not None and not isinstance(old, KeyShare):
            raise LocalProtocolError("an Ed25519 resharing needs a generic key share")
        return ReshareSession(GenericReshareDriver(spec, me, old, rng),
                              lambda data, sender: decode_reshare_message(ED25519, data, sender),
                              "reshare-ed25519", spec, me)
    if old is not None and not isinstance(old, Dkls23Key):
        raise LocalProtocolError("a DKLs23 resharing needs a DKLs23 key")
    return ReshareSession(DklsReshareParty(spec, me, old, rng), decode_dkls_reshare_message,
                          "dkls23-reshare", spec, me)

