"""Who syncs and whose reports count when the chain changes a key's membership (mpc_party/lifecycle.py):
pure rules over real shares, so every party derives the same sets."""

from __future__ import annotations

from appliance.mpc_party.lifecycle import _among, _syncing
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.frost.local import run_dkg
from appliance.mpc_party.protocols.versionsync import Holding
from appliance.rules.membership import Membership, reshare_plan
from tests.mpc.test_reshare import reshare_frost


def test_removed_holders_leave_the_syncs_only_when_the_staying_ones_can_deal():
    two_of_three = reshare_plan([1, 2, 3], 2, Membership((2, 3), 2), key_id=5, attempt=0)
    assert set(two_of_three.dealers) == {2, 3}
    assert _syncing((1, 2, 3), two_of_three, 2) == (2, 3)  # a lost party 1 need not answer
    three_of_three = reshare_plan([1, 2, 3], 3, Membership((2, 3), 2), key_id=5, attempt=0)
    assert three_of_three.dealers == (1, 2, 3)
    assert _syncing((1, 2, 3), three_of_three, 3) == (1, 2, 3)  # party 1 must deal, so it syncs too
    assert _syncing((1, 2, 3), None, 2) == (1, 2, 3)  # a refresh in place: every holder


def test_a_new_sharing_counts_only_the_reports_of_its_own_holders():
    old = {s.party_id: s for s in run_dkg(3, 2, FROST_ED25519)}
    new = reshare_frost({1: old[1], 2: old[2], 3: old[3]}, (1, 2), (2, 3), 2)
    reports = {1: Holding(b"\x01" * 32), 2: Holding(b"\x01" * 32, b"\x02" * 32), 3: Holding(b"\x01" * 32, b"\x02" * 32)}
    assert set(_among(reports, new[2])) == {2, 3}  # party 1 was not dealt the new sharing
    assert _among(reports, None) == reports
