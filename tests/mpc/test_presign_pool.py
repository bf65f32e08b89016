"""Presignature pools at the protocol level (protocols/pool.py): fill sessions, one-round signing from an
entry, the in-session fallback to the full protocol, and the attacks on entries: a replayed online
message, a second message for one entry, a peer naming a wrong entry. Every signature is checked with
an independent library (coincurve for ECDSA, PyNaCl for Ed25519)."""

from __future__ import annotations

import hashlib
import secrets

import coincurve
import nacl.signing
import pytest

from appliance.mpc_party.protocols import dispatch
from appliance.mpc_party.protocols.dkls23 import local as dkls_local
from appliance.mpc_party.protocols.frost import FROST_ED25519
from appliance.mpc_party.protocols.frost import local as frost_local
from appliance.mpc_party.protocols.pool import (
    HIT,
    MISMATCH,
    MISS,
    NO_ENTRY,
    FillHeader,
    FillSession,
    Offer,
    PoolEntry,
    PoolSignSession,
    fill_session_id,
)
from appliance.mpc_party.protocols.sessions import run_in_process
from appliance.mpc_party.protocols.wire import LocalProtocolError, ProtocolAbort

KEYRING = "keyring1pooltest"
ECDSA = "KEY_TYPE_ECDSA_SECP256K1"
EDDSA = dispatch.EDDSA


@pytest.fixture(scope="module")
def dkls_keys() -> dict[int, object]:
    return {k.party_id: k for k in dkls_local.run_dkg(3, 2)}


@pytest.fixture(scope="module")
def frost_keys() -> dict[int, object]:
    return {k.party_id: k for k in frost_local.run_dkg(3, 2, FROST_ED25519)}


def _public(key_type: str, share: object) -> bytes:
    return share.group_public_key if key_type == EDDSA else share.public_key  # type: ignore[attr-defined]


def fill(key_type: str, keys: dict[int, object], signers: tuple[int, ...], version: int = 1) -> dict[int, PoolEntry]:
    """One fill session among `signers`, run in one process; every member's entry."""
    nonce = secrets.token_bytes(32)
    sessions = [FillSession(KEYRING, key_type, keys[i], version, signers, nonce, secrets.token_bytes)
                for i in signers]
    entries = run_in_process(sessions)
    assert len({e.entry_id for e in entries}) == 1
    return {s.me: e for s, e in zip(sessions, entries, strict=True)}


def online(key_type: str, keys: dict[int, object], signers: tuple[int, ...], message: bytes,
           entries: dict[int, PoolEntry | None], sid: bytes | None = None) -> list[PoolSignSession]:
    sid = sid or secrets.token_bytes(32)
    return [PoolSignSession(dispatch.sign_session(key_type, keys[i], sid, signers, message, secrets.token_bytes),
                            entries.get(i), keys[i], message) for i in signers]


def verify(key_type: str, public_key: bytes, message: bytes, signature: bytes) -> None:
    if key_type == EDDSA:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        return
    der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(signature))
    assert coincurve.PublicKey(public_key).verify(der, message, hasher=None)
    assert int.from_bytes(signature[32:], "big") <= coincurve.utils.GROUP_ORDER_INT // 2  # low S


def _message(key_type: str) -> bytes:
    return b"pool message " + secrets.token_bytes(8) if key_type == EDDSA else hashlib.sha256(
        secrets.token_bytes(16)).digest()


@pytest.mark.parametrize("key_type", [ECDSA, EDDSA])
def test_sign_from_pool_in_one_round_verified_independently(key_type: str, request: pytest.FixtureRequest) -> None:
    keys = request.getfixturevalue("dkls_keys" if key_type == ECDSA else "frost_keys")
    signers = (1, 3)
    entries = fill(key_type, keys, signers)
    message = _message(key_type)
    sessions = online(key_type, keys, signers, message, entries)
    sigs = run_in_process(sessions)
    assert len(set(sigs)) == 1
    assert all(s.outcome == HIT for s in sessions)
    assert all(s.current_round == 1 for s in sessions)  # one round of messages, no more
    verify(key_type, _public(key_type, keys[1]), message, sigs[0])


@pytest.mark.parametrize("key_type", [ECDSA, EDDSA])
def test_no_entry_falls_back_to_the_full_protocol_in_the_same_session(key_type: str,
                                                                       request: pytest.FixtureRequest) -> None:
    keys = request.getfixturevalue("dkls_keys" if key_type == ECDSA else "frost_keys")
    message = _message(key_type)
    sessions = online(key_type, keys, (1, 2), message, {})
    sigs = run_in_process(sessions)
    assert {s.outcome for s in sessions} == {MISS}
    verify(key_type, _public(key_type, keys[1]), message, sigs[0])


@pytest.mark.parametrize("key_type", [ECDSA, EDDSA])
def test_entries_out_of_step_burn_and_fall_back(key_type: str, request: pytest.FixtureRequest) -> None:
    """Party 1 finished a fill party 2 did not keep (crash between its last message and ours): they
    open different entries. Nobody combines, both name each other's entry (to burn), the full protocol
    signs in the same session."""
    keys = request.getfixturevalue("dkls_keys" if key_type == ECDSA else "frost_keys")
    signers = (1, 2)
    first, second = fill(key_type, keys, signers), fill(key_type, keys, signers)
    message = _message(key_type)
    sessions = online(key_type, keys, signers, message, {1: first[1], 2: second[2]})
    sigs = run_in_process(sessions)
    assert {s.outcome for s in sessions} == {MISMATCH}
    assert sessions[0].named == {second[2].entry_id} and sessions[1].named == {first[1].entry_id}
    verify(key_type, _public(key_type, keys[1]), message, sigs[0])
    with pytest.raises(LocalProtocolError):  # party 1's entry was opened for this message: never again
        online(key_type, keys, signers, _message(key_type), {1: first[1], 2: first[2]})[0].start()


@pytest.mark.parametrize("key_type", [ECDSA, EDDSA])
def test_an_entry_never_signs_a_second_message(key_type: str, request: pytest.FixtureRequest) -> None:
    """A peer asking twice (a second session naming the same entry) gets nothing: the entry was opened
    for the first message and refuses to open again."""
    keys = request.getfixturevalue("dkls_keys" if key_type == ECDSA else "frost_keys")
    signers = (2, 3)
    entries = fill(key_type, keys, signers)
    run_in_process(online(key_type, keys, signers, _message(key_type), entries))
    again = online(key_type, keys, signers, _message(key_type), entries)
    with pytest.raises(LocalProtocolError):
        again[0].start()


def test_replayed_online_message_is_refused(dkls_keys: dict[int, object]) -> None:
    """The offer of a finished session, replayed into the same session or a new one, is refused: a
    second message in the one round aborts; in a new session it names an entry nobody holds any more and
    carries a first message bound to the old session, so the new session aborts without combining, and
    the entry we opened for it is burned with it."""
    signers = (1, 2)
    entries = fill(ECDSA, dkls_keys, signers)
    message = _message(ECDSA)
    sessions = online(ECDSA, dkls_keys, signers, message, entries)
    offers = {s.me: s.start()[0].payload for s in sessions}
    sessions[0].receive(2, offers[2])
    assert sessions[0].outcome == HIT
    with pytest.raises(ProtocolAbort):
        sessions[0].receive(2, offers[2])
    newer = fill(ECDSA, dkls_keys, signers)
    fresh = online(ECDSA, dkls_keys, signers, message, {1: newer[1]})
    fresh[0].start()
    with pytest.raises(ProtocolAbort, match="another session"):
        fresh[0].receive(2, offers[2])
    assert fresh[0].outcome == MISMATCH and fresh[0].named == {entries[2].entry_id}
    with pytest.raises(LocalProtocolError):
        online(ECDSA, dkls_keys, signers, message, {1: newer[1]})[0].start()


def test_wrong_entry_id_is_refused_and_burned(dkls_keys: dict[int, object]) -> None:
    """A peer naming an entry other than ours: we do not combine (no signature from mismatched halves),
    and the named id is reported for burning."""
    signers = (1, 3)
    entries = fill(ECDSA, dkls_keys, signers)
    message = _message(ECDSA)
    sid = secrets.token_bytes(32)
    honest = online(ECDSA, dkls_keys, signers, message, entries, sid)[0]
    honest.start()
    theirs = Offer.decode(online(ECDSA, dkls_keys, signers, message, {3: entries[3]}, sid)[1].start()[0].payload, 3)
    forged = Offer(secrets.token_bytes(32), theirs.share, theirs.first)
    honest.receive(3, forged.encode())
    assert honest.outcome == MISMATCH and forged.entry_id in honest.named
    assert not honest.done  # carries on as the full protocol, never combines the halves


def test_offer_encoding_checks() -> None:
    with pytest.raises(ProtocolAbort):
        Offer.decode(Offer(NO_ENTRY, b"share without entry", b"x").encode(), 2)
    with pytest.raises(ProtocolAbort):
        Offer.decode(Offer(b"\x01" * 32, b"", b"x").encode(), 2)
    with pytest.raises(ProtocolAbort):
        Offer.decode(Offer(b"\x01" * 32, b"s", b"x").encode() + b"\x00", 2)


def test_entry_id_binds_key_version_signers_and_nonce(dkls_keys: dict[int, object]) -> None:
    pk, nonce = dkls_keys[1].public_key, secrets.token_bytes(32)
    base = fill_session_id(KEYRING, ECDSA, pk, 1, (1, 2), nonce)
    assert base != fill_session_id(KEYRING, ECDSA, pk, 2, (1, 2), nonce)
    assert base != fill_session_id(KEYRING, ECDSA, pk, 1, (1, 3), nonce)
    assert base != fill_session_id(KEYRING, ECDSA, pk, 1, (1, 2), secrets.token_bytes(32))
    assert base != fill_session_id(KEYRING, "KEY_TYPE_BITCOIN_SECP256K1", pk, 1, (1, 2), nonce)
    header = FillHeader(pk, 1, (1, 2), nonce)
    assert FillHeader.split(header.encode() + b"rest") == (header, b"rest")


def test_fill_with_another_header_aborts(dkls_keys: dict[int, object]) -> None:
    """A member whose fill header names another version (or key, set, nonce) is another entry: abort."""
    nonce = secrets.token_bytes(32)
    a = FillSession(KEYRING, ECDSA, dkls_keys[1], 1, (1, 2), nonce, secrets.token_bytes)
    b = FillSession(KEYRING, ECDSA, dkls_keys[2], 2, (1, 2), nonce, secrets.token_bytes)
    a.start()
    with pytest.raises(ProtocolAbort):
        a.receive(2, b.start()[0].payload)


def test_entry_of_another_signer_set_is_refused(dkls_keys: dict[int, object]) -> None:
    entries = fill(ECDSA, dkls_keys, (1, 2))
    with pytest.raises(LocalProtocolError):
        online(ECDSA, dkls_keys, (1, 3), _message(ECDSA), {1: entries[1]})


@pytest.mark.parametrize("key_type", [ECDSA, EDDSA])
def test_a_peer_aborting_after_the_offers_gains_no_second_use(key_type: str, request: pytest.FixtureRequest) -> None:
    """Selective abort: party 2 sees party 1's offer (entry id, share for message m) and stops. Party 1's
    entry is spent (it cannot open again, for m or anything else); when party 2 later offers the entry it
    kept, party 1 (with a newer entry) does not combine and names it for burning: the aborted entry never
    completes a signature on either side."""
    keys = request.getfixturevalue("dkls_keys" if key_type == ECDSA else "frost_keys")
    signers = (1, 2)
    entries, newer = fill(key_type, keys, signers), fill(key_type, keys, signers)
    message = _message(key_type)
    first = online(key_type, keys, signers, message, {1: entries[1]})[0]
    first.start()  # the offer leaves; party 2 aborts here
    for other in (message, _message(key_type)):
        with pytest.raises(LocalProtocolError):
            online(key_type, keys, signers, other, {1: entries[1]})[0].start()
    sid = secrets.token_bytes(32)
    later = online(key_type, keys, signers, message, {1: newer[1], 2: entries[2]}, sid)
    offers = {s.me: s.start()[0].payload for s in later}
    later[0].receive(2, offers[2])
    assert later[0].outcome == MISMATCH and later[0].named == {entries[2].entry_id}
