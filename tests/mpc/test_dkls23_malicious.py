"""DKLs23 against a malicious peer: the two key-extraction attacks of issue 11, written as attacks.

1. Selective abort on the KOS check: the peer (as OT-extension receiver) flips one bit of column l in
   one padding row of its U matrix and sends check values consistent with the flipped matrix. The
   honest sender passes the check iff Delta_l = 0. Each outcome is one bit of Delta.
2. Repeated session: the same session id run twice with different choice bits gives the peer both OT
   pads of every row where the bits differ, and tau - v0 + v1 is the honest party's key share.

Each attack is first shown to work against the unprotected protocol (a control, by disabling the
defence), then shown to fail against the real code.
"""

from __future__ import annotations

import hashlib
import secrets

import pytest

from appliance.mpc_party.pairguard import PairBurned, PairGuard
from appliance.mpc_party.protocols.dkls23 import common, local, mul, resetup, sign
from appliance.mpc_party.protocols.dkls23.common import KOS_PAD, OT_WIDTH, STAT, XI, CorrelationAbort, Q
from appliance.mpc_party.protocols.dkls23.keyshare import delta_bits
from appliance.mpc_party.protocols.dkls23.sign import SignSession, decode_sign_message
from appliance.mpc_party.state import PartyState
from tests.attacks import flipping_extend
from tests.mpc.test_dkls23_sign import check_signature

DIGEST = hashlib.sha256(b"malicious peer").digest()
HONEST, EVIL = 1, 2


@pytest.fixture(scope="module")
def keys():
    return local.run_dkg(3, 2)


def _wire(msg):
    return decode_sign_message(msg.to_bytes(), msg.sender)


def _exchange(sessions: dict, msgs: list) -> None:
    for m in msgs:
        targets = [j for j in sessions if j != m.sender] if m.BROADCAST else [m.recipient]
        for j in targets:
            sessions[j].receive(_wire(m))


# --- attack 1: selective abort on the OT-extension check -----------------------------------------

def _probe(monkeypatch, honest_key, evil_key, column: int) -> bool:
    """One signing session in which the evil party probes Delta_column of the honest party's pair
    toward it; True if the honest party passed the check (so the session went on)."""
    sid = secrets.token_bytes(32)
    sessions = {k.party_id: SignSession(k, sid, [HONEST, EVIL]) for k in (honest_key, evil_key)}
    _exchange(sessions, [s.round0() for s in sessions.values()])
    honest_r1 = sessions[HONEST].round1()
    with monkeypatch.context() as patch:
        patch.setattr(mul, "receiver_extend", flipping_extend(lambda: column))
        evil_r1 = sessions[EVIL].round1()
    _exchange(sessions, honest_r1 + evil_r1)
    try:
        sessions[HONEST].round2()
    except CorrelationAbort as exc:
        assert exc.culprit == EVIL
        return False
    return True


def test_control_without_containment_the_probe_reads_delta(monkeypatch, keys):
    """The attack works against a party that keeps its pair after an abort: 128 probes, all of Delta."""
    honest, evil = keys[0], keys[1]
    delta = delta_bits(honest.pairs[EVIL].delta)
    learned = [0 if _probe(monkeypatch, honest, evil, col) else 1 for col in range(OT_WIDTH)]
    assert learned == delta


def _resetup(key_a, key_b):
    """The pairwise re-setup the daemons run on their own, here in process."""
    return local.resetup_pair(key_a, key_b)


class _NoThreads(PairGuard):
    """The real guard, with re-setups run by the test instead of a background thread."""

    def schedule(self, public_key: bytes, peer: int) -> None:
        self.requested = (public_key, peer)


def test_bit_flip_strategy_for_256_sessions_is_contained(monkeypatch, keys, tmp_path):
    """256 sessions of the bit-flip strategy against the real containment rules: the first failed
    check burns the pair (durably), the party refuses that pair until the re-setup, the re-setup gives
    a fresh Delta, and what the adversary learned never covers more than a few bits of any Delta."""
    honest, evil = keys[0], keys[1]
    state = PartyState(tmp_path / "party_state.sqlite")
    guard = _NoThreads(me=HONEST, keyring="keyring1", store=None, state=state, sealer=None, runner=None,
                       rng_factory=lambda: secrets.token_bytes)
    deltas = [honest.pairs[EVIL].delta]
    knowledge: dict[int, int] = {}  # column -> bit, about the Delta in use now
    most_known = burns = refused = 0
    column = 0
    for _ in range(256):
        try:
            guard.check_signers("KEY_TYPE_ECDSA_SECP256K1", honest.public_key, (HONEST, EVIL))
        except PairBurned:
            refused += 1
            assert guard.requested == (honest.public_key, EVIL)
            honest, evil = _resetup(honest, evil)  # what the daemons do on their own
            state.clear_burn("keyring1", honest.public_key, EVIL)
            deltas.append(honest.pairs[EVIL].delta)
            knowledge, column = {}, 0  # a fresh Delta: nothing learned applies to it
            continue
        try:
            passed = _probe(monkeypatch, honest, evil, column)
        except CorrelationAbort:
            raise AssertionError("the probe itself reports through its return value") from None
        if passed:
            knowledge[column] = 0
        else:
            guard.on_abort(CorrelationAbort("OT extension consistency check failed", EVIL), honest.public_key)
            assert EVIL in state.burned_peers("keyring1", honest.public_key)
            burns += 1
            knowledge[column] = 1
        most_known = max(most_known, len(knowledge))
        column += 1
    assert burns >= 20 and refused in (burns, burns - 1)
    assert len(set(deltas)) == len(deltas), "every re-setup drew a fresh Delta"
    # P(c passes in a row) = 2^-c: 30 known bits of one Delta would be a 2^-30 event
    assert most_known < 30, most_known
    current = delta_bits(honest.pairs[EVIL].delta)
    assert all(current[col] == bit for col, bit in knowledge.items())  # the knowledge was real...
    assert len(knowledge) < 30  # ...but covers a few bits of the Delta in use, never the 128 a pad needs
    # whatever is burned at the end is still burned after a restart of the party
    before = state.burned_peers("keyring1", honest.public_key)
    state.close()
    assert PartyState(tmp_path / "party_state.sqlite").burned_peers("keyring1", honest.public_key) == before


def test_burn_is_durable_and_refuses_until_cleared(tmp_path, keys):
    state = PartyState(tmp_path / "s.sqlite")
    guard = _NoThreads(me=HONEST, keyring="k", store=None, state=state, sealer=None, runner=None,
                       rng_factory=lambda: secrets.token_bytes)
    guard.on_abort(CorrelationAbort("OT extension consistency check failed", EVIL), keys[0].public_key)
    state.close()
    state = PartyState(tmp_path / "s.sqlite")
    guard = _NoThreads(me=HONEST, keyring="k", store=None, state=state, sealer=None, runner=None,
                       rng_factory=lambda: secrets.token_bytes)
    with pytest.raises(PairBurned, match="party \\[2\\]"):
        guard.check_signers("KEY_TYPE_ECDSA_SECP256K1", keys[0].public_key, (1, 2))
    guard.check_signers("KEY_TYPE_ECDSA_SECP256K1", keys[0].public_key, (1, 3))  # other pairs sign on
    guard.check_signers("KEY_TYPE_EDDSA_ED25519", keys[0].public_key, (1, 2))  # FROST has no OT pairs
    state.clear_burn("k", keys[0].public_key, EVIL)
    guard.check_signers("KEY_TYPE_ECDSA_SECP256K1", keys[0].public_key, (1, 2))


def test_other_aborts_do_not_burn(tmp_path, keys):
    """Only checks that depend on our Delta burn; a bad multiplication response (checked with fresh
    per-session values) names the culprit without touching the pair."""
    from appliance.mpc_party.protocols.wire import ProtocolAbort
    state = PartyState(tmp_path / "s.sqlite")
    guard = _NoThreads(me=HONEST, keyring="k", store=None, state=state, sealer=None, runner=None,
                       rng_factory=lambda: secrets.token_bytes)
    guard.on_abort(ProtocolAbort("multiplication consistency check failed", EVIL), keys[0].public_key)
    assert state.burned() == []


def test_resetup_keeps_shares_and_gives_fresh_deltas(keys):
    a, b = _resetup(keys[0], keys[1])
    assert (a.secret, a.public_key, a.epoch, a.key_id) == (keys[0].secret, keys[0].public_key, keys[0].epoch,
                                                          keys[0].key_id)
    assert a.pairs[2].delta != keys[0].pairs[2].delta and b.pairs[1].delta != keys[1].pairs[1].delta
    assert a.pairs[3] == keys[0].pairs[3] and b.pairs[3] == keys[1].pairs[3]
    check_signature(keys[0].public_key, DIGEST, local.sign_now([a, b], DIGEST))
    check_signature(keys[0].public_key, DIGEST, local.sign_now([a, keys[2]], DIGEST))  # untouched pairs
    with pytest.raises(CorrelationAbort):  # one side re-set up, the other not: caught, and burns again
        local.sign_now([a, keys[1]], DIGEST)


def test_resetup_through_the_session_face(keys):
    """The daemon's face of the re-setup (5 rounds, header in round 1) gives working keys too."""
    from appliance.mpc_party.protocols import dispatch
    nonce = secrets.token_bytes(32)
    sid = resetup.resetup_session_id(keys[0].key_id, keys[0].public_key, 1, 3, nonce)
    a = dispatch.resetup_session(keys[0], sid, 3, nonce, secrets.token_bytes)
    b = dispatch.resetup_session(keys[2], sid, 1, nonce, secrets.token_bytes)
    out_a, out_b = a.start(), b.start()
    while not (a.done and b.done):
        out_a, out_b = ([o for m in out_b for o in a.receive(3, m.payload)],
                        [o for m in out_a for o in b.receive(1, m.payload)])
    check_signature(keys[0].public_key, DIGEST, local.sign_now([a.result(), b.result()], DIGEST))


def test_resetup_header_must_match(keys):
    from appliance.mpc_party.protocols import dispatch
    from appliance.mpc_party.protocols.wire import ProtocolAbort
    nonce = secrets.token_bytes(32)
    sid = resetup.resetup_session_id(keys[0].key_id, keys[0].public_key, 1, 2, nonce)
    a = dispatch.resetup_session(keys[0], sid, 2, nonce, secrets.token_bytes)
    b = dispatch.resetup_session(keys[1], sid, 1, secrets.token_bytes(32), secrets.token_bytes)
    a.start()
    with pytest.raises(ProtocolAbort, match="header") as exc:
        a.receive(2, b.start()[0].payload)
    assert exc.value.culprit == 2


# --- attack 2: one session id run twice ---------------------------------------------------------

def _run_to_round2(keys_by_id, sid, rng_for=None):
    """Rounds 0-2 of a 2-party session; returns (sessions, round-2 messages by sender)."""
    sessions = {j: SignSession(k, sid, sorted(keys_by_id), (rng_for or {}).get(j, secrets.token_bytes))
                for j, k in keys_by_id.items()}
    _exchange(sessions, [s.round0() for s in sessions.values()])
    _exchange(sessions, [m for s in sessions.values() for m in s.round1()])
    r2 = {j: s.round2() for j, s in sessions.items()}
    return sessions, r2


def _evil_view(sessions, r2):
    """What the evil party (Bob toward the honest Alice) knows after round 2: per OT row its choice bit,
    its pad v_beta, and the honest party's tau row."""
    bob = sessions[EVIL]._bob[HONEST]
    tau_msg = next(m for m in r2[HONEST] if m.recipient == EVIL).alice
    tau = common.decode_scalars(tau_msg.tau, XI * mul.W)
    base = mul._row_oracle(bob.pair)
    view = []
    for k, bit in enumerate(bob.beta):
        pad = mul._pads(base, k, bob.rows[16 * k: 16 * k + 16])
        view.append((bit, pad, tau[mul.W * k: mul.W * k + mul.W]))
    return view


def _extract_share(view1, view2) -> set[int]:
    """Where the two runs used different choice bits on a row with the same pads, the pads cancel:
    tau_1 + tau_2 = alpha_1 + alpha_2, whose key-share entry is 2 * sk_i."""
    half = pow(2, -1, Q)
    return {(t1[1] + t2[1]) * half % Q
            for (b1, _p1, t1), (b2, _p2, t2) in zip(view1, view2, strict=True) if b1 != b2}


def test_control_repeated_session_with_reused_pads_leaks_the_share(monkeypatch, keys):
    """With the pair key bound to the session id alone (the old code), running the same session id
    twice gives the evil peer the honest party's weighted key share."""
    monkeypatch.setattr(sign, "fresh_pair_key",
                        lambda ctx, alice, bob, na, nb: common.pair_id(ctx, alice, bob))
    by_id = {HONEST: keys[0], EVIL: keys[1]}
    sid = secrets.token_bytes(32)
    view1 = _evil_view(*_run_to_round2(by_id, sid))
    view2 = _evil_view(*_run_to_round2(by_id, sid))
    assert keys[0].weighted_secret([HONEST, EVIL]) in _extract_share(view1, view2)


def test_repeated_session_id_never_reuses_pads(keys):
    """The real protocol: the same session id twice gives different pair keys, KOS streams and pads,
    and the attacker's best guesses never hit the honest share."""
    by_id = {HONEST: keys[0], EVIL: keys[1]}
    sid = secrets.token_bytes(32)
    s1, r2a = _run_to_round2(by_id, sid)
    s2, r2b = _run_to_round2(by_id, sid)
    assert s1[HONEST].pair_key(HONEST, EVIL) != s2[HONEST].pair_key(HONEST, EVIL)
    assert s1[EVIL]._bob[HONEST].rows != s2[EVIL]._bob[HONEST].rows
    view1, view2 = _evil_view(s1, r2a), _evil_view(s2, r2b)
    assert {tuple(p) for _, p, _ in view1}.isdisjoint(tuple(p) for _, p, _ in view2)
    assert keys[0].weighted_secret([HONEST, EVIL]) not in _extract_share(view1, view2)


def test_evil_party_repeating_its_own_nonce_gains_nothing(keys):
    """Even an evil peer that replays its round-0 nonce meets the honest party's fresh one."""
    fixed = secrets.token_bytes(32)

    def replaying(n: int) -> bytes:
        return fixed if n == common.NONCE_LEN else secrets.token_bytes(n)

    by_id = {HONEST: keys[0], EVIL: keys[1]}
    sid = secrets.token_bytes(32)
    view1 = _evil_view(*_run_to_round2(by_id, sid, {EVIL: replaying}))
    view2 = _evil_view(*_run_to_round2(by_id, sid, {EVIL: replaying}))
    assert keys[0].weighted_secret([HONEST, EVIL]) not in _extract_share(view1, view2)


def test_used_session_ids_survive_a_restart(tmp_path):
    sid = secrets.token_bytes(32)
    state = PartyState(tmp_path / "s.sqlite")
    assert state.claim_session(sid, "sign")
    assert not state.claim_session(sid, "sign")
    state.close()
    state = PartyState(tmp_path / "s.sqlite")  # the restarted party
    assert not state.claim_session(sid, "sign") and state.session_used(sid)
    assert state.claim_session(secrets.token_bytes(32), "sign")


def test_parameters_as_specified():
    assert STAT == 80 and KOS_PAD == OT_WIDTH + STAT
    assert common.M_OT % 8 == 0


def test_re_sends_of_one_invitation_count_once_against_the_limit(tmp_path):
    """The initiator re-sends its first envelope every 0.1 s until we open the session: counting those
    used up a peer's minute in 2 s and left an honest pair burned (CI, after a resharing). Distinct
    invitations are still limited."""
    from appliance.mpc_party.pairguard import MAX_INVITES_PER_MINUTE
    guard = _NoThreads(me=HONEST, keyring="k", store=None, state=PartyState(tmp_path / "s.sqlite"), sealer=None,
                       runner=None, rng_factory=lambda: secrets.token_bytes)
    one = secrets.token_bytes(32)
    assert all(guard._invite_allowed(EVIL, one) for _ in range(10 * MAX_INVITES_PER_MINUTE))
    distinct = [guard._invite_allowed(EVIL, secrets.token_bytes(32)) for _ in range(MAX_INVITES_PER_MINUTE)]
    assert distinct.count(False) == 1 and not distinct[-1]  # the first one used one of the minute's slots
    assert guard._invite_allowed(EVIL, one)  # an invitation already counted goes on being answered
    assert guard._invite_allowed(3, secrets.token_bytes(32))  # per peer


class _Runner:
    def __init__(self) -> None:
        self.cancelled: list[bytes] = []

    def cancel(self, session_id: bytes, reason: str) -> bool:
        self.cancelled.append(session_id)
        return True


def test_two_initiators_of_one_pair_the_higher_index_gives_way(tmp_path, keys):
    """Both sides burned the pair and invite each other: each holds its key lock for its own
    initiation. The higher-indexed party cancels its own when the lower one's invitation arrives (the
    lower one keeps its own and lets the other's invitation wait)."""
    from nacl.signing import SigningKey

    from appliance.mpc_party.envelope import Envelope
    from appliance.mpc_party.protocols import dispatch
    from tests.transport.conftest import sign_with
    pk = keys[0].public_key
    for me, peer, expect_cancel in ((2, 1, True), (1, 2, False)):
        runner = _Runner()
        guard = _NoThreads(me=me, keyring="k", store=None, state=PartyState(tmp_path / f"{me}.sqlite"),
                           sealer=None, runner=runner, rng_factory=lambda: secrets.token_bytes)
        ours = secrets.token_bytes(32)
        guard._initiating[(pk, peer)] = ours
        guard._key_locks[pk].acquire()  # our initiation holds the key
        nonce = secrets.token_bytes(32)
        theirs = resetup.resetup_session_id(keys[peer - 1].key_id, pk, peer, me, nonce)
        first = dispatch.resetup_session(keys[peer - 1], theirs, me, nonce, secrets.token_bytes).start()[0]
        env = Envelope.create(sign_with(SigningKey.generate()),
                              session_id=theirs, protocol=dispatch.DklsResetupSession.protocol, round=1,
                              sender=peer, recipient=me, seq=0, payload=first.payload)
        guard.on_unopened(env)
        assert runner.cancelled == ([ours] if expect_cancel else [])
