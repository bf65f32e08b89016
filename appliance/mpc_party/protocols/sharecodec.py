"""Byte encodings of key shares for sealing by the HSM (never for the wire).

Protocol packages keep secret shares in types without a wire encoder so that a share cannot be sent by
mistake. The party daemon still has to hand a share to the HSM for sealing, so this module — used only
by the daemon's share storage — turns a share into bytes and back. The bytes exist only in memory, on
their way into `Hsm.seal` or out of `Hsm.unseal`.

Layout: tag u8 | version u8 | body. Tag 1 is the generic DKG `KeyShare` (FROST keys). Version 1
numbers the parties 1..n; version 2 (written only when the ids are not 1..n, e.g. after a resharing
that removed a party) writes each verification share's id before it.
"""

from __future__ import annotations

from appliance.mpc_party.protocols.dkg import KeyShare
from appliance.mpc_party.protocols.group import ED25519, SECP256K1, Group
from appliance.mpc_party.protocols.wire import SESSION_ID_LEN, ProtocolError, Reader, Writer

TAG_DKG_KEYSHARE = 1
VERSION = 1
VERSION_IDS = 2
GROUPS: dict[str, Group] = {g.name: g for g in (SECP256K1, ED25519)}


class ShareCodecError(ValueError):
    """Unsealed bytes are not a share this version understands."""


def encode_keyshare(share: KeyShare) -> bytes:
    g = share.group
    ids = sorted(share.verification_shares)
    numbered = ids == list(range(1, share.n + 1))
    w = Writer().u8(TAG_DKG_KEYSHARE).u8(VERSION if numbered else VERSION_IDS).var(g.name.encode())
    w.u16(share.party_id).u16(share.n).u16(share.t).scalar(g, share.secret).point(g, share.group_public_key)
    for j in ids:
        if not numbered:
            w.u16(j)
        w.point(g, share.verification_shares[j])
    return w.fixed(share.session_id, SESSION_ID_LEN).getvalue()


def decode_keyshare(data: bytes) -> KeyShare:
    r = Reader(data)
    try:
        if r.u8() != TAG_DKG_KEYSHARE or (version := r.u8()) not in (VERSION, VERSION_IDS):
            raise ShareCodecError("not a version-1 or -2 DKG key share")
        name = r.var(32).decode()
        if name not in GROUPS:
            raise ShareCodecError(f"unknown group {name!r}")
        g = GROUPS[name]
        party_id, n, t = r.u16(), r.u16(), r.u16()
        secret, key = r.scalar(g), r.point(g)
        if version == VERSION:
            vshares = {j: r.point(g) for j in range(1, n + 1)}
        else:
            vshares = {}
            for _ in range(n):
                j = r.u16()
                vshares[j] = r.point(g)
            if sorted(vshares) != list(vshares) or len(vshares) != n or party_id not in vshares:
                raise ShareCodecError("verification share ids not distinct, sorted and ours")
        session_id = r.fixed(SESSION_ID_LEN)
        r.finish()
    except (ValueError, ProtocolError) as exc:
        raise ShareCodecError(f"malformed key share: {exc}") from None
    return KeyShare(g, party_id, n, t, secret, key, vshares, session_id)
