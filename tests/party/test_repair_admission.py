"""A share-repair helper (mpc_party/keyrepair.py `on_unopened`) helps only a party among the key's
holders: repair hands a party back its own point of the existing polynomial, so for an index the key
was never dealt to (a party the chain added) it would be a share of the old threshold made outside
any resharing. The holder's share is a real FROST share and the invitation a real one; that a holder
missing its share is helped is the repair e2e's (tests/e2e/test_party_down_keygen.py)."""

from __future__ import annotations

import secrets
from types import SimpleNamespace

from appliance.mpc_party.envelope import Envelope
from appliance.mpc_party.keyrepair import KeyRepair
from appliance.mpc_party.protocols import repair
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.frost.local import run_dkg


def helper(opened: list[bytes]) -> KeyRepair:
    share = run_dkg(3, 2, FROST_ED25519)[0]  # party 1's share of a 2-of-3 key among 1, 2, 3
    record = SimpleNamespace(meta=SimpleNamespace(key_type="KEY_TYPE_EDDSA_ED25519"))
    runner = SimpleNamespace(gate=SimpleNamespace(open_session=opened.append))
    h = KeyRepair(me=1, keyring="keyring1x", parties=[1, 2, 3, 4], t=2, store=None, sealer=None, runner=runner,
                  identity_keys={}, keygen=SimpleNamespace(open_share=lambda _r: share), pairs=None, state=None,
                  reader=None, lister=list, rng_factory=lambda: secrets.token_bytes)
    h._helpable = lambda _pk: (record, SimpleNamespace())  # a committed share with complete evidence
    h.public_key = bytes(share.group_public_key)
    return h


def invite(h: KeyRepair, target: int) -> Envelope:
    inv = repair.Invitation(h.public_key, target, (1, 2), secrets.token_bytes(repair.NONCE_LEN))
    return Envelope(inv.session_id, repair.PROTOCOL, 1, target, 1, 0, inv.encode())


def test_a_party_outside_the_keys_holders_gets_no_repair(caplog) -> None:
    opened: list[bytes] = []
    h = helper(opened)
    h.on_unopened(invite(h, 4))
    assert opened == []
    assert "holds no share of this key" in caplog.text



def test_the_target_asks_helper_sets_of_the_chains_threshold_first() -> None:
    """A key made 3-of-4 after the chain raised the threshold (the roster still says 2) needs 3 helpers."""
    h = KeyRepair(me=4, keyring="keyring1x", parties=[1, 2, 3, 4], t=2, store=None, sealer=None, runner=None,
                  identity_keys={}, keygen=None, pairs=None, state=None, reader=None, lister=list,
                  rng_factory=lambda: secrets.token_bytes, threshold=lambda: 3)
    sets = h._helper_sets([1, 2, 3])
    assert sets[0] == (1, 2, 3) and {len(s) for s in sets} == {3, 2}
    h.threshold = None
    assert {len(s) for s in h._helper_sets([1, 2, 3])} == {2}
