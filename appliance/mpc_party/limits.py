"""How much a peer may send: the rounds each protocol has and the size of every message in them.

The envelope gate (`envelope.Gate`) accepts, per session and sender, only the round numbers the
session's protocol has, no payload larger than the largest message of that round, and no more bytes
in total than an honest sender sends in the whole session. This module is the one table of those
numbers: protocol name -> {round: sizes of the messages one sender sends one recipient in that round}.

Why computed rather than written down: the sizes follow from the protocols' fixed-width encodings
(header, points, scalars, the DKLs23 OT and KOS dimensions in `protocols/dkls23/common.py`), so a change
of a constant there moves the limit with it. `tests/transport/test_limits.py` runs real sessions of
every protocol and shape in use and checks every message against this table (fixed-size messages must
equal their entry exactly, so a stale formula fails loudly).

To add or change a protocol: add one `_xxx_rounds` function returning {round: (message sizes, ...)}
and one line in `round_table`. A protocol missing from the table is not refused: it gets `DEFAULT`
(a few rounds of modest messages and a small budget), and the gate logs it once.

Sizes that depend on the cluster shape (the DKG's t commitments) are computed for a threshold equal to
the number of parties in the roster, the largest any session of this cluster can use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from appliance.mpc_party.envelope_cert import MAX_CERT_LEN
from appliance.mpc_party.protocols import confirm, hello, pool, repair
from appliance.mpc_party.protocols.dkg import MAX_PARTIES, write_header
from appliance.mpc_party.protocols.dkls23 import mul
from appliance.mpc_party.protocols.dkls23.common import M_OT, NONCE_LEN, OT_WIDTH
from appliance.mpc_party.protocols.dkls23.keygen import _OT_LAYOUT as OT_LAYOUT  # the protocol's own layout
from appliance.mpc_party.protocols.dkls23.resetup import HEADER_LEN as RESETUP_HEADER_LEN
from appliance.mpc_party.protocols.frost import FROST_ED25519, FROST_SECP256K1, FROST_SECP256K1_BIP340
from appliance.mpc_party.protocols.group import ED25519, SECP256K1, Group
from appliance.mpc_party.protocols.wire import SESSION_ID_LEN, Writer

HASH_LEN = 32  # echoes, commitments, views and salts are SHA-256 sized

RoundSizes = tuple[int, ...]  # one entry per message a sender sends one recipient in the round


@dataclass(frozen=True)
class ProtocolLimits:
    """The limits of one protocol: which rounds exist, the largest payload of each, the byte budget."""

    rounds: Mapping[int, int]  # round -> largest single payload
    budget: int  # bytes one sender may have accepted in one session (all rounds)

    @classmethod
    def of(cls, rounds: Mapping[int, RoundSizes]) -> ProtocolLimits:
        """From the per-round message sizes: the largest of each round, and their sum as the budget."""
        return cls({r: max(sizes) for r, sizes in rounds.items()},
                   sum(sum(sizes) for sizes in rounds.values()))

    def max_payload(self, round_: int) -> int | None:
        """The largest payload allowed in `round_`, or None when the protocol has no such round."""
        return self.rounds.get(round_)


# A protocol the table does not know (e.g. one added by a newer peer): a few rounds of messages as big
# as the largest known message, with a budget of a few dozen of them. Bounded, and large enough that an
# honest new protocol of this family still completes while its entry is being added.
DEFAULT_ROUNDS = 8
DEFAULT_MAX_PAYLOAD = 128 << 10
DEFAULT = ProtocolLimits({r: DEFAULT_MAX_PAYLOAD for r in range(1, DEFAULT_ROUNDS + 1)}, 2 << 20)


def header_len() -> int:
    """Every protocol message starts with the common header (version, kind, session id, sender, recipient)."""
    return len(write_header(Writer(), 0, bytes(SESSION_ID_LEN), 1, 0).getvalue())


def _dkg_rounds(group: Group, t: int) -> dict[int, RoundSizes]:
    """Generic DKG: round 1 commitments (mode, t points, proof R and z); round 2 echo and one share."""
    h, p, s = header_len(), group.point_len, group.scalar_len
    commitments = h + 1 + 2 + t * p + p + s
    return {1: (commitments,), 2: (h + HASH_LEN, h + s)}


def _ot_step_size(step: int) -> int:
    """One VSOT step of the DKLs23 OT set-up: its fixed-width items (and the proof scalar in step 1)."""
    count, width, _points = OT_LAYOUT[step]
    return header_len() + count * width + (SECP256K1.scalar_len if step == 1 else 0)


def _dkls23_keygen_rounds(t: int) -> dict[int, RoundSizes]:
    """DKLs23 keygen: the DKG over secp256k1 in rounds 1-2, one OT set-up step per round 1-5."""
    dkg = _dkg_rounds(SECP256K1, t)
    return {1: (*dkg[1], _ot_step_size(1)), 2: (*dkg[2], _ot_step_size(2)),
            **{step: (_ot_step_size(step),) for step in (3, 4, 5)}}


def _dkls23_ot_resetup_rounds() -> dict[int, RoundSizes]:
    """Re-running one pair's OT set-up: the keygen's five OT steps, the first behind a longer header."""
    return {step: (_ot_step_size(step) + (RESETUP_HEADER_LEN if step == 1 else 0),) for step in OT_LAYOUT}


def _dkls23_sign_rounds() -> dict[int, RoundSizes]:
    """DKLs23 signing (envelope rounds of `dispatch.DklsSignSession`): 1 the fresh nonce, the key epoch
    (u32) and the session context; 2 commitment +
    KOS matrix; 3 echo, R, salt, multiplication response, Gammas; 4 digest and the two signature shares."""
    h, p, s = header_len(), SECP256K1.point_len, SECP256K1.scalar_len
    kos = OT_WIDTH * M_OT // 8
    kos_msg = h + HASH_LEN + kos + HASH_LEN
    alice_msg = h + HASH_LEN + p + HASH_LEN + sum(mul.AliceMessage.SIZES) + s + 2 * p
    return {1: (h + NONCE_LEN + 4 + HASH_LEN,), 2: (kos_msg,), 3: (alice_msg,), 4: (h + HASH_LEN + 2 * s,)}


def _frost_rounds(group: Group) -> dict[int, RoundSizes]:
    """FROST signing: 1 hiding and binding nonce commitments; 2 the signature share and a view hash."""
    h = header_len()
    return {1: (h + 2 * group.point_len,), 2: (h + group.scalar_len + HASH_LEN,)}


def _fill_prefix(public_key_len: int, t: int) -> int:
    """A pool fill's first message carries the FillHeader (key, u32 version, up to t signers, nonce)
    and the sender's newest entry id (protocols/pool.py)."""
    return 4 + public_key_len + 4 + 2 + 2 * t + pool.NONCE_LEN + pool.ENTRY_ID_LEN


def _dkls23_presign_rounds(t: int) -> dict[int, RoundSizes]:
    """A DKLs23 pool fill: signing rounds 1-3 (no digest round), the first behind the fill prefix."""
    rounds = _dkls23_sign_rounds()
    return {1: (rounds[1][0] + _fill_prefix(SECP256K1.point_len, t),), 2: rounds[2], 3: rounds[3]}


def _frost_precommit_rounds(t: int) -> dict[int, RoundSizes]:
    """A FROST pool fill: the commitments of round 1 behind the fill prefix."""
    return {1: (_frost_rounds(ED25519)[1][0] + _fill_prefix(ED25519.point_len, t),)}


def _pool_sign_rounds(full: dict[int, RoundSizes], share: int) -> dict[int, RoundSizes]:
    """Signing with pools on: round 1 is the offer (entry id, the share from the entry, the full
    protocol's first message); later rounds are the full protocol's, used after a miss."""
    offer = pool.ENTRY_ID_LEN + 4 + share + 4 + full[1][0]
    return {1: (offer,), **{r: sizes for r, sizes in full.items() if r != 1}}


def _reshare_rounds(group: Group, t: int) -> dict[int, RoundSizes]:
    """Resharing (`protocols/reshare.py`): 1 the deal (key id, epoch, old t, up to MAX_PARTIES old ids
    and verification shares, t' commitments) and a sub-share; 2 the echo. The old set may be larger than
    the roster after a removal, hence MAX_PARTIES for the old part."""
    h, p, s = header_len(), group.point_len, group.scalar_len
    deal = h + 32 + 4 + 2 + 2 + MAX_PARTIES * (2 + p) + 2 + t * p
    return {1: (deal, h + s), 2: (h + HASH_LEN,)}


def _dkls23_reshare_rounds(t: int) -> dict[int, RoundSizes]:
    """DKLs23 resharing: the resharing over secp256k1 in rounds 1-2, one OT set-up step per round 1-5."""
    core = _reshare_rounds(SECP256K1, t)
    return {1: (*core[1], _ot_step_size(1)), 2: (*core[2], _ot_step_size(2)),
            **{step: (_ot_step_size(step),) for step in (3, 4, 5)}}
def _note_max(n: int) -> int:
    """The largest keygen note (confirm.py) for n parties: a CONFIRM's statement with t = |P| = n
    commitments of 33 bytes, a 64-byte key type; or an ABORT with its longest reason."""
    statement = SESSION_ID_LEN + 8 + 4 + 64 + 3 + 2 * n + 4 + 16 + 2 + 33 * n + HASH_LEN
    body = 1 + 2 + SESSION_ID_LEN + 4
    return body + max(statement, confirm.MAX_REASON) + confirm.SIGNATURE_LEN


def _notes_max(n: int) -> int:
    return 1 + n * (4 + _note_max(n))


def _keygen_confirm_rounds(n: int) -> dict[int, RoundSizes]:
    """The keygen confirmation: 1 one signed note per sender; 2 after an echo mismatch only, the
    round-1 broadcast envelopes it accepted (DKG commitments of up to n dealers, t = n)."""
    h, p, s = header_len(), SECP256K1.point_len, SECP256K1.scalar_len
    commitments = h + 1 + 2 + n * p + p + s
    # a version-2 envelope: its key certificate (length-prefixed) rides along (envelope_cert.py)
    envelope = 1 + SESSION_ID_LEN + 1 + 32 + 2 + 2 + 2 + 8 + 4 + commitments + 4 + MAX_CERT_LEN + 64
    return {1: (_note_max(n),), 2: (1 + n * (4 + envelope),)}


def _keygen_holdings_rounds(n: int) -> dict[int, RoundSizes]:
    """The holdings exchange: 1 status and every note held; 2 the complete evidence found (or none)."""
    return {1: (2 + _notes_max(n),), 2: (1 + _notes_max(n),)}


def _share_repair_rounds(n: int) -> dict[int, RoundSizes]:
    """Share repair: 1 the invitation (key, helpers, nonce); 2 one part; 3 the sum and the evidence."""
    h, s = header_len(), SECP256K1.scalar_len
    return {1: (4 + 33 + 2 + 1 + 2 * n + 32,), 2: (h + s,), 3: (h + s + 4 + _notes_max(n),)}


def _version_report() -> int:
    """A version report: two digests, then the active sharing's threshold and up to MAX_PARTIES ids."""
    return header_len() + 2 * HASH_LEN + 4 + 2 * MAX_PARTIES


def _frost_name(suite: object) -> str:
    return suite.context.decode().lower()  # type: ignore[attr-defined]  # as FrostSignSession names it


@functools.cache
def round_table(parties: int) -> dict[str, ProtocolLimits]:
    """protocol name -> limits, for a cluster of `parties` (any threshold up to `parties`)."""
    t = max(1, min(parties, MAX_PARTIES))
    return {
        "dkg-ed25519": ProtocolLimits.of(_dkg_rounds(ED25519, t)),
        "dkls23-keygen": ProtocolLimits.of(_dkls23_keygen_rounds(t)),
        "dkls23-sign": ProtocolLimits.of(_dkls23_sign_rounds()),
        "dkls23-ot-resetup": ProtocolLimits.of(_dkls23_ot_resetup_rounds()),
        "reshare-ed25519": ProtocolLimits.of(_reshare_rounds(ED25519, t)),
        "dkls23-reshare": ProtocolLimits.of(_dkls23_reshare_rounds(t)),
        "share-version-sync": ProtocolLimits.of({1: (_version_report(),)}),
        # the same behind the invitation header (u8 length, a secp256k1 or Ed25519 key, a 32-byte nonce)
        "share-version-sync-invite": ProtocolLimits.of({1: (1 + SECP256K1.point_len + 32 + _version_report(),)}),
        confirm.PROTOCOL: ProtocolLimits.of(_keygen_confirm_rounds(t)),
        confirm.HOLDINGS_PROTOCOL: ProtocolLimits.of(_keygen_holdings_rounds(t)),
        repair.PROTOCOL: ProtocolLimits.of(_share_repair_rounds(t)),
        _frost_name(FROST_ED25519): ProtocolLimits.of(_frost_rounds(ED25519)),
        _frost_name(FROST_SECP256K1): ProtocolLimits.of(_frost_rounds(SECP256K1)),
        _frost_name(FROST_SECP256K1_BIP340): ProtocolLimits.of(_frost_rounds(SECP256K1)),
        "dkls23-presign": ProtocolLimits.of(_dkls23_presign_rounds(t)),
        "frost-ed25519-precommit": ProtocolLimits.of(_frost_precommit_rounds(t)),
        "dkls23-sign-pool": ProtocolLimits.of(_pool_sign_rounds(_dkls23_sign_rounds(),
                                                                _dkls23_sign_rounds()[4][0])),
        _frost_name(FROST_ED25519) + "-pool": ProtocolLimits.of(_pool_sign_rounds(_frost_rounds(ED25519),
                                                                                  _frost_rounds(ED25519)[2][0])),
        # announcements (envelope.Gate never queues them): a hello naming up to every party, a result note
        hello.HELLO_PROTOCOL: ProtocolLimits.of({hello.HELLO_ROUND: (hello.MAX_HELLO_LEN,)}),
        hello.RESULT_PROTOCOL: ProtocolLimits.of({hello.RESULT_ROUND: (hello.MAX_RESULT_LEN,)}),
        hello.LEAVE_PROTOCOL: ProtocolLimits.of({hello.LEAVE_ROUND: (hello.LEAVE_LEN,)}),
    }


def limits_for(protocol: str, parties: int) -> tuple[ProtocolLimits, bool]:
    """The limits of `protocol` and whether the table knows it (False: `DEFAULT` applies)."""
    known = round_table(parties).get(protocol)
    return (known, True) if known is not None else (DEFAULT, False)


def largest_payload(parties: int = MAX_PARTIES) -> int:
    """The largest payload any protocol (or the default) allows: what the transport must carry."""
    return max(DEFAULT_MAX_PAYLOAD, *(max(p.rounds.values()) for p in round_table(parties).values()))
