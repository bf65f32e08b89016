"""Byte encodings of key shares for sealing by the HSM (never for the wire).

Protocol packages keep secret shares in types without a wire encoder so that a share cannot be sent by
mistake. The party daemon still has to hand a share to the HSM for sealing, so this module — used only
by the daemon's share storage — turns a share into bytes and back. The bytes exist only in memory, on
their way into `Hsm.seal` or out of `Hsm.unseal`.

Layout: tag u8 | version u8 | body. Tag 1 is the generic DKG `KeyShare` (FROST keys).
"""

from __future__ import annotations

from appliance.mpc_party.protocols.dkg import KeyShare
from appliance.mpc_party.protocols.group import ED25519, SECP256K1, Group
from appliance.mpc_party.protocols.wire import SESSION_ID_LEN, ProtocolError, Reader, Writer

TAG_DKG_KEYSHARE = 1
VERSION = 1
GROUPS: dict[str, Group] = {g.name: g for g in (SECP256K1, ED25519)}


class ShareCodecError(ValueError):
    """Unsealed bytes are not a share this version understands."""


def encode_keyshare(share: KeyShare) -> bytes:
    g = share.group
    w = Writer().u8(TAG_DKG_KEYSHARE).u8(VERSION).var(g.name.encode())
    w.u16(share.party_id).u16(share.n).u16(share.t).scalar(g, share.secret).point(g, share.group_public_key)
    for j in range(1, share.n + 1):
        w.point(g, share.verification_shares[j])
    return w.fixed(share.session_id, SESSION_ID_LEN).getvalue()


def decode_keyshare(data: bytes) -> KeyShare:
    r = Reader(data)
    try:
        if r.u8() != TAG_DKG_KEYSHARE or r.u8() != VERSION:
            raise ShareCodecError("not a version-1 DKG key share")
        name = r.var(32).decode()
        if name not in GROUPS:
            raise ShareCodecError(f"unknown group {name!r}")
        g = GROUPS[name]
        party_id, n, t = r.u16(), r.u16(), r.u16()
        secret, key = r.scalar(g), r.point(g)
        vshares = {j: r.point(g) for j in range(1, n + 1)}
        session_id = r.fixed(SESSION_ID_LEN)
        r.finish()
    except (ValueError, ProtocolError) as exc:
        raise ShareCodecError(f"malformed key share: {exc}") from None
    return KeyShare(g, party_id, n, t, secret, key, vshares, session_id)
