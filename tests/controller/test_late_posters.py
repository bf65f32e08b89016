"""Late posters (controller `_wait_before_posting`): a party repeating an answer another party posted
waits, and two such parties never wait the same. With parties joining each other's sessions
(mpc_party/join.py) a joined party's controller often has not started the job when the request turns
PARTIAL, so it copies like the party outside the quorum; both saw the same height and posted together,
and a third fulfilment of a FULFILLED request fails the whole tx it rides in (46 fulfilment txs of up
to 20 answers in one overloaded 30 s run).
"""

from __future__ import annotations

from types import SimpleNamespace

import nacl.signing

from appliance.controller.journal import Journal
from appliance.controller.service import Controller
from chain_client.proto_gen.zrchain.treasury.mpcsign_pb2 import SignReqResponse

DATA = b"message to sign"


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


def copier(tmp_path, ours: bytes | None):
    tmp_path.mkdir()
    journal = Journal(tmp_path / "journal.sqlite")
    journal.observe("sign", 5)
    return SimpleNamespace(journal=journal, _eager={("sign", 5)},
                           party=SimpleNamespace(signature=lambda request_id: ours))


def posted(signature: bytes) -> SignReqResponse:
    request = SignReqResponse(id=5, key_type="KEY_TYPE_EDDSA_ED25519", status="SIGN_REQUEST_STATUS_PARTIAL")
    request.signed_data.add(signed_data=signature)
    return request


def test_a_copy_is_eager_only_when_our_party_made_that_very_signature(tmp_path) -> None:
    """Our party joined the poster's session (join.py) before our own job ran: we are the partner who
    completes the request, at once. Any other copy waits (the poster's partner posts too)."""
    signing = nacl.signing.SigningKey.generate()
    signature = signing.sign(DATA).signature
    partner = copier(tmp_path / "a", signature)
    assert Controller._adopt_posted_signature(partner, posted(signature), bytes(signing.verify_key), DATA)
    assert ("sign", 5) in partner._eager and partner.journal.get("sign", 5).result == signature
    for ours in (None, signing.sign(b"another session").signature):
        other = copier(tmp_path / ("b" if ours is None else "c"), ours)
        assert Controller._adopt_posted_signature(other, posted(signature), bytes(signing.verify_key), DATA)
        assert ("sign", 5) not in other._eager
