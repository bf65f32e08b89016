"""Before posting, a controller whose signature differs from the one on chain posts the chain's
(verified): zrChain rejects a request whose second posted signature differs from the first."""

from __future__ import annotations

from types import SimpleNamespace

import nacl.signing

from appliance.controller.journal import Journal, State
from appliance.controller.service import Controller

DATA = b"message to sign"


def setup(tmp_path, ours: bytes):
    signing = nacl.signing.SigningKey.generate()
    key = SimpleNamespace(public_key=bytes(signing.verify_key))
    journal = Journal(tmp_path / "journal.sqlite")
    journal.observe("sign", 5)
    journal.record_result("sign", 5, ours)
    controller = SimpleNamespace(journal=journal, _key=lambda key_id: key)
    return controller, signing


def request(*posted: bytes):
    return SimpleNamespace(id=5, key_ids=[9], key_type="KEY_TYPE_EDDSA_ED25519", data_for_signing=[DATA],
                           signed_data=[SimpleNamespace(signed_data=p) for p in posted])


def test_the_chain_signature_replaces_a_different_one_of_ours(tmp_path) -> None:
    controller, signing = setup(tmp_path, b"\x01" * 64)  # another quorum's signature (or any other)
    theirs = signing.sign(DATA).signature
    entry = Controller._agree_with_chain(controller, controller.journal.get("sign", 5), request(theirs))
    assert entry is not None and entry.result == theirs and entry.state is State.RESULT
    assert controller.journal.get("sign", 5).result == theirs  # journalled before any post


def test_nothing_on_chain_or_the_same_signature_posts_ours(tmp_path) -> None:
    controller, signing = setup(tmp_path, b"")
    ours = signing.sign(DATA).signature
    controller.journal.record_result("sign", 5, ours)
    entry = controller.journal.get("sign", 5)
    assert Controller._agree_with_chain(controller, entry, request()) is entry
    assert Controller._agree_with_chain(controller, entry, request(ours)) is entry


def test_an_invalid_signature_on_chain_is_not_repeated(tmp_path) -> None:
    controller, _signing = setup(tmp_path, b"\x01" * 64)
    entry = controller.journal.get("sign", 5)
    assert Controller._agree_with_chain(controller, entry, request(b"\x02" * 64)) is None
    assert controller.journal.get("sign", 5).result == b"\x01" * 64
