"""What one DKLs23 party keeps between sessions: `Dkls23Key`.

One object holds everything a party needs to sign: its Shamir share, the group key, every party's
public share (to check its peers' multiplication inputs), and for each peer the long-lived OT
extension setup of both directions. `to_bytes` / `from_bytes` give the fixed-layout plaintext that
the HSM layer seals (AES-GCM); it must never be written anywhere unsealed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from appliance.mpc_party.protocols.dkg import KeyShare
from appliance.mpc_party.protocols.dkls23.common import GROUP, OT_WIDTH, Q
from appliance.mpc_party.protocols.group import EncodingError, Point, lagrange_at_zero
from appliance.mpc_party.protocols.wire import LocalProtocolError, ProtocolAbort, Reader, Writer

MAGIC = b"ZRDKLS23"
KEY_VERSION_V1 = 1  # read only: parties numbered 1..n, an OT set-up with every peer
KEY_VERSION = 2  # parties numbered 1..n; a pair count before the pairs (a key made with parties down has fewer)
KEY_VERSION_IDS = 3  # as 2, each public share preceded by its party id (after a resharing changed the set)
KEY_VERSIONS = (KEY_VERSION_V1, KEY_VERSION, KEY_VERSION_IDS)


@dataclass(frozen=True, repr=False)
class PairSetup:
    """OT-extension setup with one peer. As Alice (extension sender) we hold Delta and the seeds
    k_l^{Delta_l}; as Bob (extension receiver) we hold both seeds (k_l^0, k_l^1)."""

    delta: bytes
    seeds_delta: tuple[bytes, ...]
    seeds0: tuple[bytes, ...]
    seeds1: tuple[bytes, ...]

    def check(self) -> None:
        seeds = (*self.seeds_delta, *self.seeds0, *self.seeds1)
        if len(self.delta) != 16 or any(len(s) != 32 for s in seeds) or not (
                len(self.seeds_delta) == len(self.seeds0) == len(self.seeds1) == OT_WIDTH):
            raise LocalProtocolError("malformed OT setup")


@dataclass(frozen=True, repr=False)
class Dkls23Key:
    """A party's DKLs23 key material (secret: keep in memory only, or sealed by the HSM)."""

    key_id: bytes  # session id of the DKG that created the key; stays across refreshes
    epoch: int  # 0 after keygen, +1 per refresh (the share version the HSM AAD binds)
    party_id: int
    n: int
    t: int
    secret: int
    public_key: Point
    public_shares: Mapping[int, Point]
    pairs: Mapping[int, PairSetup]

    def __repr__(self) -> str:
        return (f"Dkls23Key(party={self.party_id}, {self.t}-of-{self.n}, epoch={self.epoch}, "
                f"key={self.public_key.hex()}, secret=<hidden>)")

    def missing_pairs(self, signers: Sequence[int]) -> list[int]:
        """Signers we have no OT set-up with yet (absent at keygen or repaired; a re-setup makes it)."""
        return sorted(j for j in signers if j != self.party_id and j not in self.pairs)

    def weighted_secret(self, signers: list[int]) -> int:
        """Our additive share of the key for this signer set: lambda_i * x_i."""
        return lagrange_at_zero(self.party_id, signers, Q) * self.secret % Q

    def weighted_public(self, j: int, signers: list[int]) -> Point:
        return GROUP.mul(self.public_shares[j], lagrange_at_zero(j, signers, Q))

    def as_dkg_share(self) -> KeyShare:
        return KeyShare(GROUP, self.party_id, self.n, self.t, self.secret, self.public_key,
                        dict(self.public_shares), self.key_id)

    def to_bytes(self) -> bytes:
        ids = sorted(self.public_shares)
        numbered = ids == list(range(1, self.n + 1))
        w = Writer().fixed(MAGIC, 8).u8(KEY_VERSION if numbered else KEY_VERSION_IDS)
        w.fixed(self.key_id, 32).u32(self.epoch)
        w.u16(self.party_id).u16(self.n).u16(self.t).scalar(GROUP, self.secret).point(GROUP, self.public_key)
        for j in ids:
            if not numbered:
                w.u16(j)
            w.point(GROUP, self.public_shares[j])
        w.u16(len(self.pairs))
        for j in sorted(self.pairs):
            p = self.pairs[j]
            w.u16(j).fixed(p.delta, 16)
            for s in (*p.seeds_delta, *p.seeds0, *p.seeds1):
                w.fixed(s, 32)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Dkls23Key:
        """Parse and fully check a stored key (points on the curve, share matches its public share)."""
        try:
            r = Reader(data)
            if r.fixed(8) != MAGIC or (version := r.u8()) not in KEY_VERSIONS:
                raise LocalProtocolError("not a DKLs23 key (magic/version)")
            key_id, epoch = r.fixed(32), r.u32()
            party_id, n, t = r.u16(), r.u16(), r.u16()
            secret, public_key = r.scalar(GROUP), r.point(GROUP)
            public_shares = {}
            for j in range(1, n + 1):
                index = r.u16() if version == KEY_VERSION_IDS else j  # the id comes before its point
                public_shares[index] = r.point(GROUP)
            pairs = {}
            for _ in range(n - 1 if version == KEY_VERSION_V1 else r.u16()):
                j, delta = r.u16(), r.fixed(16)
                seeds = [r.fixed(32) for _ in range(3 * OT_WIDTH)]
                pairs[j] = PairSetup(delta, tuple(seeds[:OT_WIDTH]), tuple(seeds[OT_WIDTH:2 * OT_WIDTH]),
                                     tuple(seeds[2 * OT_WIDTH:]))
            r.finish()
        except (ProtocolAbort, EncodingError) as exc:
            raise LocalProtocolError(f"corrupt DKLs23 key: {exc}") from None
        key = cls(key_id, epoch, party_id, n, t, secret, public_key, public_shares, pairs)
        key.validate()
        return key

    def validate(self) -> None:
        ids = sorted(self.public_shares)
        if not 1 <= self.t <= self.n == len(ids) or self.party_id not in self.public_shares:
            raise LocalProtocolError("DKLs23 key: bad shape")
        peers = [j for j in ids if j != self.party_id]
        if not set(self.pairs) <= set(peers) or len(self.pairs) != len(set(self.pairs)):
            raise LocalProtocolError("DKLs23 key: OT setup for a party that is not a peer")
        for p in self.pairs.values():
            p.check()
        if GROUP.base_mul(self.secret) != self.public_shares[self.party_id]:
            raise LocalProtocolError("DKLs23 key: share does not match its public share")
        # all public shares on one degree t-1 polynomial with value X at 0: neighbouring windows of t
        # share t - 1 points and the value at 0, so checking n - t + 1 sliding windows suffices
        for start in range(self.n - self.t + 1):
            window = ids[start:start + self.t]
            if GROUP.sum(self.weighted_public(j, window) for j in window) != self.public_key:
                raise LocalProtocolError("DKLs23 key: public shares do not interpolate to the public key")


def delta_bits(delta: bytes) -> list[int]:
    """Delta as OT_WIDTH choice bits, bit l = column l (the order `ot_ext` uses)."""
    return np.unpackbits(np.frombuffer(delta, dtype=np.uint8), bitorder="little").tolist()
