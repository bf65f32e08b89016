"""Who repeats a signature another party posted at once, and who waits (controller `_adopt_posted_signature`).

A quorum member whose party joined the poster's session (mpc_party/join.py) holds the same session's
signature: it is the partner that completes the request and posts at once. A party outside that
session (outside the quorum, or whose own set was another) waits LATE_POST_BLOCKS: the poster's partner
posts too, and a third fulfilment of a FULFILLED request fails the whole tx it rides in (in one
overloaded run before this, 46 fulfilment txs of up to 20 answers failed that way).
"""

from __future__ import annotations

from types import SimpleNamespace

import nacl.signing

from appliance.controller.journal import Journal
from appliance.controller.quorum import QuorumPicker
from appliance.controller.service import Controller
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import SignReqResponse

DATA = b"message to sign"
ADDRESSES = {1: "zen1one", 2: "zen1two", 3: "zen1three"}


def controller(tmp_path, me: int, started: tuple[int, ...] | None):
    journal = Journal(tmp_path / f"journal-{me}.sqlite")
    journal.observe("sign", 5)
    quorum = QuorumPicker(me, [1, 2, 3], 2)
    if started is not None:
        quorum.mark_tried(5, 0, started)
    roster = SimpleNamespace(party=lambda i: SimpleNamespace(chain_address=ADDRESSES[i]))
    made = SimpleNamespace(journal=journal, quorum=quorum, parties=[1, 2, 3], roster=roster,
                           _eager={("sign", 5)}, _attempt=lambda mpc_btl: 0,
                           deadlines=SimpleNamespace(of=lambda kind, req: 100))
    made._posters = lambda req: Controller._posters(made, req)
    made._party_sigs = Controller._party_sigs
    return made


def posted_by(poster: int, signing: nacl.signing.SigningKey) -> SignReqResponse:
    """The chain's own answer type (a stand-in with the wrong field name once hid a tick failure)."""
    request = SignReqResponse(id=5, key_type="KEY_TYPE_EDDSA_ED25519", status="SIGN_REQUEST_STATUS_PARTIAL")
    request.signed_data.add(signed_data=signing.sign(DATA).signature)
    request.keyring_party_sigs.add(creator=ADDRESSES[poster])
    return request


def test_the_partner_of_the_posters_session_repeats_at_once(tmp_path) -> None:
    signing = nacl.signing.SigningKey.generate()
    ours = controller(tmp_path, me=1, started=(1, 2))
    assert Controller._adopt_posted_signature(ours, posted_by(2, signing), bytes(signing.verify_key), DATA)
    assert ("sign", 5) in ours._eager and ours.journal.get("sign", 5).result is not None


def test_a_party_outside_the_posters_session_waits(tmp_path) -> None:
    signing = nacl.signing.SigningKey.generate()
    outside = controller(tmp_path, me=3, started=None)  # never started a set for it
    assert Controller._adopt_posted_signature(outside, posted_by(2, signing), bytes(signing.verify_key), DATA)
    assert ("sign", 5) not in outside._eager
    other_set = controller(tmp_path, me=1, started=(1, 3))  # its own set was another: 2 has a partner
    assert Controller._adopt_posted_signature(other_set, posted_by(2, signing), bytes(signing.verify_key), DATA)
    assert ("sign", 5) not in other_set._eager


def late_poster(me: int):
    made = SimpleNamespace(me=me, parties=[1, 2, 3], _eager=set(), _ready_height={}, height=50,
                           _late_post_blocks=lambda: 2)
    made._late_rank = lambda request_id: Controller._late_rank(made, request_id)
    return made


def test_late_posters_are_staggered_the_same_way_on_every_party() -> None:
    """Two late posters that saw the same PARTIAL request at the same height post blocks apart, so the
    first one's fulfilment lands before the second would post (and then it does not)."""
    for request_id in range(1, 40):
        waits = {}
        for me in (1, 2, 3):
            party = late_poster(me)
            entry = SimpleNamespace(kind="sign", request_id=request_id)
            blocks = 0
            while Controller._wait_before_posting(party, entry):
                party.height += 1
                blocks += 1
            waits[me] = blocks
        assert sorted(waits.values()) == [2, 4, 6]  # distinct: nobody posts together
