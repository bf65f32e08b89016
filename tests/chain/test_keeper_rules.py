"""Every treasury/identity keeper rule of shared/zrchain-wire.md, through real gRPC against a node process."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time

import pytest
from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from nacl.signing import SigningKey

from chain_client.crypto import SECP256K1_ORDER, normalize_s, request_id_digest
from chain_client.errors import ChainTxError
from chain_client.messages import (
    fulfil_key_request,
    fulfil_sign_request,
    reject_key_request,
    reject_sign_request,
)
from chain_client.proto_gen.zrchain.identity import tx_pb2 as identity_tx
from chain_client.proto_gen.zrchain.treasury import tx_pb2 as treasury_tx
from tests.chain.conftest import digest, verify_ecdsa


def sign_digest(key: PrivateKey, data: bytes) -> bytes:
    signature = key.sign_recoverable(data, hasher=None)[:64]
    verify_ecdsa(key.public_key.format(), data, signature)
    return signature


def random_nonce_signature(key: PrivateKey, data: bytes) -> bytes:
    """A valid low-S signature with a random nonce (pyca/cryptography), unlike RFC 6979's fixed one."""
    private = ec.derive_private_key(int.from_bytes(key.secret, "big"), ec.SECP256K1())
    r, s = decode_dss_signature(private.sign(data, ec.ECDSA(Prehashed(hashes.SHA256()))))
    signature = normalize_s(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    PublicKey(key.public_key.format()).verify(cdata_to_der(deserialize_compact(signature)), data, hasher=None)
    return signature


def new_key(world, keyring: str, key_type: str = "ecdsa", parties=None, public_key: bytes | None = None):
    """A fulfilled key; returns (key id, private key object)."""
    (request_id,) = world.key_requests(keyring, key_type=key_type)
    if key_type == "ed25519":
        private = SigningKey.generate()
        public = bytes(private.verify_key)
    else:
        private = PrivateKey()
        public = private.public_key.format()
    for party in parties or world.parties[:1]:
        world.client.send(party, [fulfil_key_request(party, request_id, public_key or public)])
    request = world.client.key_request(request_id)
    assert request.status == "KEY_REQUEST_STATUS_FULFILLED"
    key_id = next(k.id for k in world.client.keys(world.workspace) if k.public_key == public)
    return key_id, private


def expect_tx_error(func, *fragments: str) -> ChainTxError:
    with pytest.raises(ChainTxError) as caught:
        func()
    for fragment in fragments:
        assert fragment in caught.value.raw_log, caught.value.raw_log
    return caught.value


# ---- key requests --------------------------------------------------------------------------------------


def test_party_signature_is_request_id_signed_by_the_party_key(world):
    party = world.parties[0]
    msg = fulfil_key_request(party, 7, PrivateKey().public_key.format())
    assert len(msg.keyring_party_signature) == 64
    verify_ecdsa(party.public_key(), request_id_digest(7), msg.keyring_party_signature)
    assert request_id_digest(7) == hashlib.sha256(bytes([0, 0, 0, 0, 0, 0, 0, 7])).digest()


def test_only_keyring_parties_may_fulfil(world):
    keyring = world.keyring(parties=1)
    (request_id,) = world.key_requests(keyring)
    outsider = world.parties[4]
    msg = fulfil_key_request(outsider, request_id, PrivateKey().public_key.format())
    expect_tx_error(lambda: world.client.send(outsider, [msg]), "is not a party of keyring")
    assert world.client.key_request(request_id).status == "KEY_REQUEST_STATUS_PENDING"


def test_party_signature_length_rejects_the_request_and_the_tx_succeeds(world):
    """treasury FulfilKeyRequest: a keyring_party_signature that is not 64 bytes rejects the request
    ("invalid mpc party signature"), even on a rejection; the tx itself succeeds. An outsider's post
    is refused first (upstream checks the length before the party: see docs/chain.md)."""
    keyring = world.keyring(parties=1)
    first, second = world.key_requests(keyring, count=2)
    outsider, party = world.parties[4], world.parties[0]
    msg = reject_key_request(outsider, first, "no")
    msg.keyring_party_signature = msg.keyring_party_signature[:63]
    expect_tx_error(lambda: world.client.send(outsider, [msg]), "is not a party of keyring")
    short = fulfil_key_request(party, first, PrivateKey().public_key.format())
    short.keyring_party_signature = short.keyring_party_signature[:63]
    assert world.client.send(party, [short]).code == 0
    request = world.client.key_request(first)
    assert request.status == "KEY_REQUEST_STATUS_REJECTED"
    assert request.reject_reason == "invalid mpc party signature, should be 64 bytes, is 63"
    world.client.send(party, [reject_key_request(party, second, "cannot make this key")])
    assert world.client.key_request(second).reject_reason == "cannot make this key"


def test_threshold_partial_then_fulfilled_creates_key(world):
    keyring = world.keyring(parties=3, threshold=2)
    (request_id,) = world.key_requests(keyring)
    public = PrivateKey().public_key.format()
    p1, p2 = world.parties[:2]
    world.client.send(p1, [fulfil_key_request(p1, request_id, public)])
    request = world.client.key_request(request_id)
    assert request.status == "KEY_REQUEST_STATUS_PARTIAL"
    assert [s.creator for s in request.keyring_party_signatures] == [p1.address()]
    assert not [k for k in world.client.keys(world.workspace) if k.public_key == public]
    partial = world.client.key_requests(keyring, "KEY_REQUEST_STATUS_PARTIAL")
    assert [r.id for r in partial] == [request_id]
    world.client.send(p2, [fulfil_key_request(p2, request_id, public)])
    request = world.client.key_request(request_id)
    assert request.status == "KEY_REQUEST_STATUS_FULFILLED"
    assert request.public_key == public
    for sig in request.keyring_party_signatures:
        signer = p1 if sig.creator == p1.address() else p2
        verify_ecdsa(signer.public_key(), request_id_digest(request_id), sig.signature)
    (key,) = [k for k in world.client.keys(world.workspace) if k.public_key == public]
    assert world.client.key(key.id).keyring_addr == keyring
    assert key.type == "KEY_TYPE_ECDSA_SECP256K1"


def test_fulfilled_request_takes_no_more_answers(world):
    keyring = world.keyring(parties=2, threshold=1)
    (request_id,) = world.key_requests(keyring)
    public = PrivateKey().public_key.format()
    p1, p2 = world.parties[:2]
    world.client.send(p1, [fulfil_key_request(p1, request_id, public)])
    expect_tx_error(
        lambda: world.client.send(p2, [fulfil_key_request(p2, request_id, public)]),
        "is not pending or partial",
    )
    assert world.client.key_request(request_id).status == "KEY_REQUEST_STATUS_FULFILLED"


def test_second_fulfilment_from_same_party_rejects_whole_request(world):
    keyring = world.keyring(parties=2, threshold=2)
    (request_id,) = world.key_requests(keyring)
    public = PrivateKey().public_key.format()
    p1 = world.parties[0]
    world.client.send(p1, [fulfil_key_request(p1, request_id, public)])
    response = world.client.send(p1, [fulfil_key_request(p1, request_id, public)])
    assert any(e.type == "key_request_rejected" for e in response.events)
    request = world.client.key_request(request_id)
    assert request.status == "KEY_REQUEST_STATUS_REJECTED"
    assert "already sent a fulfilment" in request.reject_reason


def test_differing_public_key_rejects_whole_request(world):
    keyring = world.keyring(parties=2, threshold=2)
    (request_id,) = world.key_requests(keyring)
    p1, p2 = world.parties[:2]
    world.client.send(p1, [fulfil_key_request(p1, request_id, PrivateKey().public_key.format())])
    world.client.send(p2, [fulfil_key_request(p2, request_id, PrivateKey().public_key.format())])
    request = world.client.key_request(request_id)
    assert request.status == "KEY_REQUEST_STATUS_REJECTED"
    assert "different public key" in request.reject_reason


@pytest.mark.parametrize(
    ("key_type", "public_key", "fragment"),
    [
        ("ecdsa", b"\x04" + bytes(range(1, 33)), "33 bytes compressed"),
        ("ecdsa", b"\x02" + bytes(31), "33 bytes compressed"),
        ("ecdsa", b"\x02" + bytes(5) + b"\x01" * 27, "five or more leading zero bytes"),
        ("bitcoin", b"\x03" + bytes(6) + b"\x07" * 26, "five or more leading zero bytes"),
        ("ed25519", bytes(5) + b"\x09" * 27, "five or more leading zero bytes"),
        ("ed25519", b"\x09" * 33, "must be 32 bytes"),
    ],
)
def test_public_key_format_rules(world, key_type, public_key, fragment):
    keyring = world.extra.setdefault("format_keyring", world.keyring(parties=1))
    (request_id,) = world.key_requests(keyring, key_type=key_type)
    party = world.parties[0]
    expect_tx_error(
        lambda: world.client.send(party, [fulfil_key_request(party, request_id, public_key)]), fragment
    )
    assert world.client.key_request(request_id).status == "KEY_REQUEST_STATUS_PENDING"


def test_four_leading_zero_bytes_are_accepted(world):
    keyring = world.keyring(parties=1)
    public = bytes(4) + b"\x11" * 28  # four zero bytes is still a valid key encoding
    (request_id,) = world.key_requests(keyring, key_type="ed25519")
    party = world.parties[0]
    world.client.send(party, [fulfil_key_request(party, request_id, public)])
    assert world.client.key_request(request_id).status == "KEY_REQUEST_STATUS_FULFILLED"


def test_reject_reason_length_limit(world):
    keyring = world.keyring(parties=1)
    first, second = world.key_requests(keyring, count=2)
    party = world.parties[0]
    too_long = reject_key_request(party, first, "x")
    too_long.reject_reason = "x" * 513
    expect_tx_error(lambda: world.client.send(party, [too_long]), "at most 512")
    world.client.send(party, [reject_key_request(party, second, "y" * 512)])
    assert world.client.key_request(second).reject_reason == "y" * 512


def test_key_request_fee_escrowed_charged_per_fulfilment_refunded_on_reject(world):
    """treasury NewKeyRequest escrows key_req_fee from the creator; FulfilKeyRequest charges the same fee
    to the *posting party* (SplitKeyringFee, to the keyring address); a party's rejection refunds the
    creator. Neither query reports `fee` (query_key_requests.go, query_key_request_by_id.go)."""
    fee = 12_345
    keyring = world.keyring(parties=1, key_req_fee=fee)
    before = world.client.account(world.owner.address())
    owner_balance = _balance(world, world.owner.address())
    first, second = world.key_requests(keyring, count=2)
    tx_fee = world.client.config.fee_amount
    assert _balance(world, world.owner.address()) == owner_balance - 2 * fee - tx_fee
    assert world.client.key_request(first).fee == 0
    party = world.parties[0]
    party_balance = _balance(world, party.address())
    world.client.send(
        party,
        [
            fulfil_key_request(party, first, PrivateKey().public_key.format()),
            reject_key_request(party, second, "no"),
        ],
    )
    assert _balance(world, world.owner.address()) == owner_balance - fee - tx_fee
    assert _balance(world, party.address()) == party_balance - fee - tx_fee
    assert _balance(world, keyring) == fee
    assert before.sequence + 1 == world.client.account(world.owner.address()).sequence


def _balance(world, address: str) -> int:
    """Balances are not in the wire API; read them the way an operator would, from the node's state file."""
    with sqlite3.connect(f"file:{world.node.data_dir / 'state.sqlite'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT v FROM state WHERE ns='account' AND k=?", (address,)).fetchone()
    return json.loads(row[0])["balance"] if row else 0


def test_timeout_rejects_and_refunds(world):
    fee = 999
    keyring = world.keyring(parties=1, key_req_fee=fee, sig_req_fee=fee)
    key_id, _ = new_key(world, keyring)
    balance = _balance(world, world.owner.address())
    (key_request_id,) = world.key_requests(keyring, mpc_btl=2)
    sign_id = world.sign_request(key_id, [digest("timeout")], mpc_btl=2)
    tx_fee = world.client.config.fee_amount
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if world.client.sign_request(sign_id).status == "SIGN_REQUEST_STATUS_REJECTED":
            break
        time.sleep(0.1)
    key_request = world.client.key_request(key_request_id)
    sign_request = world.client.sign_request(sign_id)
    assert key_request.status == "KEY_REQUEST_STATUS_REJECTED"
    assert key_request.reject_reason == f"key request {key_request_id} timed out"
    assert sign_request.status == "SIGN_REQUEST_STATUS_REJECTED"
    assert sign_request.reject_reason.endswith("timed out")
    assert _balance(world, world.owner.address()) == balance - 2 * tx_fee  # both request fees came back
    party = world.parties[0]
    late = fulfil_key_request(party, key_request_id, PrivateKey().public_key.format())
    expect_tx_error(lambda: world.client.send(party, [late]), "not pending or partial")


# ---- signature requests ----------------------------------------------------------------------------------


def test_ecdsa_signature_verified_against_data_low_s_required(world):
    keyring = world.keyring(parties=1)
    key_id, private = new_key(world, keyring)
    data = digest("pay 1 BTC")
    request_id = world.sign_request(key_id, [data])
    party = world.parties[0]
    signature = sign_digest(private, data)
    s = int.from_bytes(signature[32:], "big")
    high_s = signature[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big")
    expect_tx_error(
        lambda: world.client.send(party, [fulfil_sign_request(party, request_id, high_s)]), "lower-S"
    )
    wrong = sign_digest(private, digest("something else"))
    expect_tx_error(
        lambda: world.client.send(party, [fulfil_sign_request(party, request_id, wrong)]), "does not verify"
    )
    expect_tx_error(
        lambda: world.client.send(party, [fulfil_sign_request(party, request_id, signature[:63])]), "64 bytes"
    )
    with_v = signature + b"\x01"  # 65 bytes (r||s||v) are accepted too
    world.client.send(party, [fulfil_sign_request(party, request_id, with_v)])
    request = world.client.sign_request(request_id)
    assert request.status == "SIGN_REQUEST_STATUS_FULFILLED"
    assert request.signed_data[0].signed_data == with_v
    verify_ecdsa(private.public_key.format(), data, request.signed_data[0].signed_data[:64])


def test_bitcoin_key_signature_is_r_s(world):
    keyring = world.keyring(parties=1)
    key_id, private = new_key(world, keyring, key_type="bitcoin")
    data = digest("btc tx")
    request_id = world.sign_request(key_id, [data])
    party = world.parties[0]
    world.client.send(party, [fulfil_sign_request(party, request_id, sign_digest(private, data))])
    assert world.client.sign_request(request_id).status == "SIGN_REQUEST_STATUS_FULFILLED"


def test_ed25519_signature_over_raw_data(world):
    keyring = world.keyring(parties=1)
    key_id, private = new_key(world, keyring, key_type="ed25519")
    data = b"solana message bytes, not a digest" * 3
    request_id = world.sign_request(key_id, [data])
    party = world.parties[0]
    bad = private.sign(b"other").signature
    expect_tx_error(
        lambda: world.client.send(party, [fulfil_sign_request(party, request_id, bad)]), "does not verify"
    )
    signature = private.sign(data).signature
    Ed25519PublicKey.from_public_bytes(bytes(private.verify_key)).verify(signature, data)  # not PyNaCl
    world.client.send(party, [fulfil_sign_request(party, request_id, signature)])
    request = world.client.sign_request(request_id)
    assert request.status == "SIGN_REQUEST_STATUS_FULFILLED"
    assert request.key_type == "KEY_TYPE_EDDSA_ED25519"


def test_several_hashes_make_parent_and_children(world):
    keyring = world.keyring(parties=1)
    key_id, private = new_key(world, keyring)
    hashes = [digest(f"h{i}") for i in range(3)]
    parent_id = world.sign_request(key_id, hashes)
    parent = world.client.sign_request(parent_id)
    assert len(parent.child_req_ids) == 3
    assert list(parent.data_for_signing) == hashes
    party = world.parties[0]
    sig = sign_digest(private, hashes[0])
    expect_tx_error(
        lambda: world.client.send(party, [fulfil_sign_request(party, parent_id, sig)]), "child requests"
    )
    children = [world.client.sign_request(i) for i in parent.child_req_ids]
    for child, data in zip(children, hashes, strict=True):
        assert child.parent_req_id == parent_id
        assert list(child.data_for_signing) == [data]
    first, *rest = children
    world.client.send(party, [fulfil_sign_request(party, first.id, sign_digest(private, hashes[0]))])
    assert world.client.sign_request(parent_id).status == "SIGN_REQUEST_STATUS_PENDING"
    world.client.send(
        party,
        [fulfil_sign_request(party, c.id, sign_digest(private, c.data_for_signing[0])) for c in rest],
    )
    parent = world.client.sign_request(parent_id)
    assert parent.status == "SIGN_REQUEST_STATUS_FULFILLED"
    assert len(parent.signed_data) == 3


def test_sign_request_threshold_duplicate_and_differing_signature(world):
    keyring = world.keyring(parties=3, threshold=2)
    key_id, private = new_key(world, keyring, parties=world.parties[:2])
    p1, p2, _ = world.parties[:3]
    data = digest("two of three")
    signature = sign_digest(private, data)
    ok_id, dup_id, diff_id = (world.sign_request(key_id, [data]) for _ in range(3))
    world.client.send(p1, [fulfil_sign_request(p1, i, signature) for i in (ok_id, dup_id, diff_id)])
    assert world.client.sign_request(ok_id).status == "SIGN_REQUEST_STATUS_PARTIAL"
    other = random_nonce_signature(private, data)  # a second, equally valid signature
    assert other != signature
    world.client.send(
        p2, [fulfil_sign_request(p2, ok_id, signature), fulfil_sign_request(p2, diff_id, other)]
    )
    world.client.send(p1, [fulfil_sign_request(p1, dup_id, signature)])
    assert world.client.sign_request(ok_id).status == "SIGN_REQUEST_STATUS_FULFILLED"
    dup = world.client.sign_request(dup_id)
    assert dup.status == "SIGN_REQUEST_STATUS_REJECTED" and "already sent a fulfilment" in dup.reject_reason
    diff = world.client.sign_request(diff_id)
    assert diff.status == "SIGN_REQUEST_STATUS_REJECTED"
    assert diff.reject_reason == f"signed data mismatch, expected {signature.hex()}, got {other.hex()}"  # upstream's


def test_sign_request_reject_and_reason_limit(world):
    keyring = world.keyring(parties=1)
    key_id, _ = new_key(world, keyring)
    request_id = world.sign_request(key_id, [digest("no")])
    party = world.parties[0]
    long = reject_sign_request(party, request_id, "x")
    long.reject_reason = "r" * 513
    expect_tx_error(lambda: world.client.send(party, [long]), "at most 512")
    world.client.send(party, [reject_sign_request(party, request_id, "policy says no")])
    request = world.client.sign_request(request_id)
    assert request.status == "SIGN_REQUEST_STATUS_REJECTED" and request.reject_reason == "policy says no"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("", "empty"),
        (" , ,", "empty"),
        ("zz" * 32, "not valid hex"),
        ("ab" * 31, "64 hex characters"),
        ("ab" * 32 + ",abcd", "64 hex characters"),
    ],
)
def test_signature_request_data_rules(world, data, fragment):
    key_id = world.extra.get("data_key_id")
    if key_id is None:
        key_id = world.extra["data_key_id"] = new_key(world, world.keyring(parties=1))[0]
    msg = treasury_tx.MsgNewSignatureRequest(
        creator=world.owner.address(), key_ids=[key_id], data_for_signing=data
    )
    expect_tx_error(lambda: world.client.send(world.owner, [msg]), fragment)


def test_signature_request_unknown_key_and_inactive_keyring(world):
    msg = treasury_tx.MsgNewSignatureRequest(
        creator=world.owner.address(), key_ids=[999_999], data_for_signing=digest("x").hex()
    )
    expect_tx_error(lambda: world.client.send(world.owner, [msg]), "key 999999 not found")
    keyring = world.keyring(parties=1)
    key_id, _ = new_key(world, keyring)
    world.client.send(
        world.owner,
        [identity_tx.MsgUpdateKeyring(creator=world.owner.address(), keyring_addr=keyring, is_active=False)],
    )
    assert world.client.keyring(keyring).is_active is False
    msg.key_ids[:] = [key_id]
    expect_tx_error(lambda: world.client.send(world.owner, [msg]), "is not active")
    expect_tx_error(lambda: world.key_requests(keyring), "is not active")


def test_ed25519_data_item_under_2000_hex(world):
    keyring = world.keyring(parties=1)
    key_id, _ = new_key(world, keyring, key_type="ed25519")
    msg = treasury_tx.MsgNewSignatureRequest(
        creator=world.owner.address(), key_ids=[key_id], data_for_signing="ab" * 1000
    )
    expect_tx_error(lambda: world.client.send(world.owner, [msg]), "2000 hex characters")
    msg.data_for_signing = "ab" * 999
    world.client.send(world.owner, [msg])


# ---- identity ------------------------------------------------------------------------------------------


def test_only_admins_add_parties_and_threshold_can_grow(world):
    keyring = world.keyring(parties=0, threshold=0)
    stranger = world.parties[3]
    msg = identity_tx.MsgAddKeyringParty(
        creator=stranger.address(), keyring_addr=keyring, party=stranger.address()
    )
    expect_tx_error(lambda: world.client.send(stranger, [msg]), "is not keyring admin")  # identity AddKeyringParty
    add = identity_tx.MsgAddKeyringParty(
        creator=world.owner.address(), keyring_addr=keyring, party=stranger.address(), increase_threshold=True
    )
    world.client.send(world.owner, [add])
    found = world.client.keyring(keyring)
    assert list(found.parties) == [stranger.address()] and found.party_threshold == 1
    assert list(found.admins) == [world.owner.address()]


def test_only_workspace_owners_request_keys(world):
    keyring = world.keyring(parties=1)
    stranger = world.parties[3]
    msg = treasury_tx.MsgNewKeyRequest(
        creator=stranger.address(), workspace_addr=world.workspace, keyring_addr=keyring, key_type="ecdsa"
    )
    expect_tx_error(lambda: world.client.send(stranger, [msg]), "is not an owner")
    msg.creator, msg.key_type = world.owner.address(), "rsa"
    expect_tx_error(lambda: world.client.send(world.owner, [msg]), "unknown key type")


# ---- queries -------------------------------------------------------------------------------------------


def test_queries_filter_by_keyring_and_status_with_pagination(world):
    keyring = world.keyring(parties=1)
    ids = world.key_requests(keyring, count=5)
    assert [
        r.id for r in world.client.key_requests(keyring, "KEY_REQUEST_STATUS_PENDING", page_limit=2)
    ] == ids
    assert [r.id for r in world.client.key_requests(keyring, page_limit=3)] == ids
    assert all(r.status == "KEY_REQUEST_STATUS_PENDING" for r in world.client.key_requests(keyring))
    from chain_client.proto_gen.cosmos.base.query.v1beta1.pagination_pb2 import PageRequest
    from chain_client.proto_gen.zrchain.treasury import query_pb2

    page = world.client.call(
        "/zrchain.treasury.Query/KeyRequests",
        query_pb2.QueryKeyRequestsRequest(
            keyring_addr=keyring, pagination=PageRequest(offset=1, limit=2, count_total=True)
        ),
        query_pb2.QueryKeyRequestsResponse,
    )
    assert [r.id for r in page.key_requests] == ids[1:3]
    assert page.pagination.total == 4 and page.pagination.next_key == ids[3].to_bytes(8, "big")
    key_id, private = new_key(world, keyring)
    sign_ids = [world.sign_request(key_id, [digest(str(i))]) for i in range(2)]
    pending = world.client.sign_requests(keyring, "SIGN_REQUEST_STATUS_PENDING", page_limit=1)
    assert [r.id for r in pending] == sign_ids
    assert world.client.sign_requests(world.keyring(parties=0)) == []
    assert world.client.key_request(10**9) is None and world.client.sign_request(10**9) is None
    assert world.client.keyring("keyring1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqmq3gwn") is None
