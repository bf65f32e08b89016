"""Keyring membership from the chain, and what resharing a key to it means (pure, derived alike by
every controller and party).

The chain is the source of truth for who the keyring's parties are: `Keyring.parties` (chain
addresses) and `Keyring.party_threshold`. The roster maps each chain address to a party index (the
protocols' id), an endpoint and an identity key, so a party the chain names but the roster does not
is an operator step not yet done (add it to every roster first: docs/operations.md, runbooks).

`reshare_plan` says, for one key held by `holders` with threshold t, whether it must be reshared to
the chain's membership and by whom: t dealers among the holders, preferring holders that stay (a
party being removed need not be online), rotating with the attempt like signing quorums. The same
rule gives a wiped host (its index still on chain, its share gone) a new share: the key's holders
then lack it, so the plan reshares to the full set. This module runs nothing: the party's refresh
job applies it in each key's slot (appliance/mpc_party/lifecycle.py, `Refresher._spec`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from appliance.rules.attempts import quorum
from appliance.rules.roster import Roster
from appliance.runtime.errors import ConfigError


@dataclass(frozen=True)
class Membership:
    """The keyring's parties as roster indices (sorted) and its threshold."""

    parties: tuple[int, ...]
    threshold: int


@dataclass(frozen=True)
class ResharePlan:
    """One key's resharing: who deals (t old holders) and what the key becomes."""

    dealers: tuple[int, ...]
    new_parties: tuple[int, ...]
    new_threshold: int


def chain_membership(chain_parties: Sequence[str], party_threshold: int, roster: Roster) -> Membership:
    """Map the chain keyring's party addresses to roster indices; refuse what cannot be served."""
    by_address = {p.chain_address: p.index for p in roster.parties if p.chain_address}
    unknown = [a for a in chain_parties if a not in by_address]
    if unknown:
        raise ConfigError(f"the keyring on chain names parties {unknown} that the roster does not list: add "
                          "them to every host's roster (zrkeyring cluster roster) and restart the daemons")
    indices = [by_address[a] for a in chain_parties]
    if len(set(indices)) != len(indices):
        raise ConfigError(f"the keyring on chain lists a party twice: {list(chain_parties)}")
    if not 1 <= party_threshold <= len(indices):
        raise ConfigError(f"party_threshold {party_threshold} on chain for {len(indices)} parties")
    return Membership(tuple(sorted(indices)), party_threshold)


def reshare_plan(holders: Sequence[int], threshold: int, target: Membership, key_id: int,
                 attempt: int) -> ResharePlan | None:
    """None when the key already has the target's set and threshold; else the resharing to run.

    Raises ValueError when fewer than `threshold` holders remain: the key cannot be reshared (nor
    signed) any more."""
    held = sorted(set(holders))
    if tuple(held) == target.parties and threshold == target.threshold:
        return None
    if len(held) < threshold:
        raise ValueError(f"key {key_id}: {len(held)} holders left for threshold {threshold}")
    staying = [h for h in held if h in target.parties]
    candidates = staying if len(staying) >= threshold else held
    dealers = quorum(candidates, threshold, key_id, attempt)
    return ResharePlan(tuple(dealers), target.parties, target.threshold)
