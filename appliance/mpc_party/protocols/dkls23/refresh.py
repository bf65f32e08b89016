"""DKLs23 key refresh: same public key, new shares, new OT setup for every pair.

All n holders take part. The share update is the generic DKG in zero-sharing mode (each party deals
a random polynomial with constant term 0, Feldman-committed, echo-checked), and every ordered pair
runs a fresh batch of verified base OTs, so nothing learnt about the old seeds or shares helps
against the new ones. The result carries the same key id and epoch + 1.

Keep the old `Dkls23Key` sealed until every party has confirmed its new one: a refresh that fails
half-way must not leave a party with only a share the others no longer match.
"""

from __future__ import annotations

from appliance.mpc_party.protocols.dkls23.keygen import KeygenSession
from appliance.mpc_party.protocols.dkls23.keyshare import Dkls23Key
from appliance.mpc_party.protocols.group import Rng, default_rng


def refresh_session(key: Dkls23Key, session_id: bytes, rng: Rng = default_rng) -> KeygenSession:
    """The refresh state machine for one party; driven exactly like keygen (round1..round5, finish)."""
    return KeygenSession.for_refresh(key, session_id, rng)
