"""Membership from the chain (appliance/rules/membership.py) driving real resharings in one process:
2-of-3 -> party 4 added and threshold 3 -> party 1 removed -> a wiped host given a new share; after
each step the keys sign with new quorums (verified independently) under the same public keys."""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import pytest

from appliance.controller.quorum import QuorumPicker
from appliance.controller.service import Controller
from appliance.mpc_party.protocols.dkls23 import local as dkls_local
from appliance.rules.membership import Membership, chain_membership, reshare_plan
from appliance.rules.roster import ClusterSection, PartyEntry, Roster
from appliance.runtime.errors import ConfigError
from tests.mpc.test_reshare import ecdsa_signs, frost_keys, frost_verify, reshare_dkls, reshare_frost


def roster(n: int) -> Roster:
    parties = tuple(PartyEntry(i, f"party-{i}", f"10.0.0.{i}:7000", f"certs/{i}.pem", "aa" * 32, f"zen1party{i}")
                    for i in range(1, n + 1))
    return Roster(ClusterSection("test", 2), parties)


def test_chain_membership_maps_addresses_and_refuses_strangers():
    r = roster(4)
    assert chain_membership(["zen1party3", "zen1party1", "zen1party2"], 2, r) == Membership((1, 2, 3), 2)
    with pytest.raises(ConfigError, match="roster does not list"):
        chain_membership(["zen1party1", "zen1stranger"], 2, r)
    with pytest.raises(ConfigError, match="twice"):
        chain_membership(["zen1party1", "zen1party1"], 1, r)
    with pytest.raises(ConfigError, match="party_threshold"):
        chain_membership(["zen1party1"], 2, r)


def test_plan_none_when_unchanged_and_dealers_prefer_staying_holders():
    same = Membership((1, 2, 3), 2)
    assert reshare_plan([1, 2, 3], 2, same, key_id=9, attempt=0) is None
    removing_1 = Membership((2, 3, 4), 2)
    for attempt in range(6):  # whatever the attempt, the leaving party 1 is never needed as a dealer
        plan = reshare_plan([1, 2, 3, 4], 3, removing_1, key_id=9, attempt=attempt)
        assert plan.dealers == (2, 3, 4) and plan.new_threshold == 2
    with pytest.raises(ValueError):
        reshare_plan([1], 2, same, key_id=9, attempt=0)  # below threshold: nothing can be done


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_add_party_raise_threshold_remove_party_replace_host(kind):
    r = roster(4)
    if kind == "ecdsa":
        shares = {k.party_id: k for k in dkls_local.run_dkg(3, 2)}
        reshare, signs = reshare_dkls, ecdsa_signs
    else:
        shares = {s.party_id: s for s in frost_keys("ed25519")}
        reshare = reshare_frost
        originals = list(shares.values())

        def signs(quorum_shares):
            frost_verify("ed25519", originals, b"membership change", quorum_shares)

    def step(chain_parties, threshold, holders, t, attempt=0):
        target = chain_membership(chain_parties, threshold, r)
        plan = reshare_plan(holders, t, target, key_id=1, attempt=attempt)
        return reshare({d: shares[d] for d in holders if d in shares}, plan.dealers, plan.new_parties,
                       plan.new_threshold), plan

    # 2-of-3 -> party 4 added on chain and party_threshold 3
    shares, plan = step(["zen1party1", "zen1party2", "zen1party3", "zen1party4"], 3, [1, 2, 3], 2)
    assert sorted(shares) == [1, 2, 3, 4]
    for q in itertools.combinations(sorted(shares), 3):
        signs([shares[i] for i in q])
    # party 1 removed on chain, threshold back to 2: parties 2..4 deal, party 1 need not be there
    shares, plan = step(["zen1party2", "zen1party3", "zen1party4"], 2, [1, 2, 3, 4], 3)
    assert 1 not in plan.dealers and sorted(shares) == [2, 3, 4]
    for q in itertools.combinations(sorted(shares), 2):
        signs([shares[i] for i in q])
    # party 3's host wiped (token and state gone), same index on chain: it gets a new share
    del shares[3]
    shares, plan = step(["zen1party2", "zen1party3", "zen1party4"], 2, [2, 4], 2)
    assert plan.dealers == (2, 4) and sorted(shares) == [2, 3, 4]
    signs([shares[3], shares[2]])
    signs([shares[4], shares[3]])


def test_new_keys_are_proposed_among_the_chain_parties_with_its_threshold():
    """The controller's keygen proposal (service.py `_read_membership`, `_keygen_members`): the chain's
    keyring once it names its parties (party 4 added with the threshold raised), the roster's before,
    and the last good reading while the chain cannot be mapped (a party the roster lacks)."""
    chain_view = {"keyring": None}
    c = Controller.__new__(Controller)
    c.keyring, c.roster, c.parties, c.threshold = "keyring1x", roster(4), [1, 2, 3, 4], 2
    c.chain = SimpleNamespace(keyring=lambda _addr: chain_view["keyring"])
    c.membership, c._membership_read = None, float("-inf")
    assert c._keygen_members() == ([1, 2, 3, 4], 2)  # nothing read yet: the roster
    chain_view["keyring"] = SimpleNamespace(parties=[f"zen1party{i}" for i in (1, 2, 3, 4)], party_threshold=3)
    c._read_membership()
    assert c._keygen_members() == ([1, 2, 3, 4], 3)
    c.quorum = QuorumPicker(1, [1, 2, 3, 4], 2)
    assert c.quorum.keygen_parties(*c._keygen_members()) == (1, 2, 3, 4)
    chain_view["keyring"] = SimpleNamespace(parties=["zen1party2", "zen1party9"], party_threshold=2)
    c._membership_read = time.monotonic() - 60
    c._read_membership()  # zen1party9 is in no roster: keep the last reading, say why
    assert c._keygen_members() == ([1, 2, 3, 4], 3)
    chain_view["keyring"] = SimpleNamespace(parties=["zen1party2", "zen1party3", "zen1party4"], party_threshold=3)
    c._membership_read = time.monotonic() - 60
    c._read_membership()
    assert c._keygen_members() == ([2, 3, 4], 3)
    assert c.quorum.keygen_parties(*c._keygen_members()) == (2, 3, 4)
