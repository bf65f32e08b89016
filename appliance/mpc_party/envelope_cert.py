"""Envelope keys: an in-memory Ed25519 key per party process, certified once by the HSM identity key.

Signing every protocol envelope with the identity key meant one HSM call per envelope, through the
process's single HSM worker thread (about a tenth of a party's CPU per ECDSA signature, and a queue
every session thread waited in). Instead the party makes an ephemeral envelope key at start-up and on
rotation, the identity key signs a `KeyCertificate` binding

    (party index, cluster name, envelope public key, not_before, not_after)

and envelopes (version 2) are signed in software with the envelope key and carry the certificate.
What an envelope proves is unchanged: a valid certificate can only come from the identity key, and
only the process that made the envelope key holds its private half, so a valid version-2 envelope
is still something that party (that process, within the certificate's validity) said. The evidence
of `evidence.py` stays checkable by anyone holding the roster: the certificate travels inside the
envelope.

Why each field:
- party index: a certificate of party A does not let A's key speak as B (the gate checks the
  certificate's party against the envelope's sender, and the TLS peer against both).
- cluster (a digest of the roster's cluster name): a host in two clusters with one identity key
  cannot have its certificate carried from one cluster to the other.
- not_after: bounds what a leaked envelope key is worth. The private key lives only in this
  process's memory (never written, never logged, gone at exit); an old certificate replayed after a
  restart is useless without it, and replayed old envelopes meet the same session rules as before
  (closed sessions never reopen, per-sender sequence numbers). Receivers refuse certificates outside
  their validity window (with `CLOCK_SKEW_S` tolerance); third parties checking evidence later do
  not apply the window (evidence is about the past).

The certificate's signature is domain-separated from every other identity-key signature
(`CERT_DOMAIN`, length-prefixed), so it cannot be mistaken for an envelope, a keygen confirmation or
anything else the identity key signs, and the envelope key signs version-2 envelopes only.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from appliance.mpc_party.protocols.wire import ProtocolAbort, Reader, Writer
from appliance.rules.roster import MAX_INDEX

log = logging.getLogger(__name__)

CERT_VERSION = 1
CERT_DOMAIN = b"zrkeyring/party-envelope-key/v1"
MAX_CLUSTER_LEN = 64
CERT_SIGNATURE_LEN = 64
# The encoded certificate's largest size: version, party, cluster (length-prefixed), key, two times,
# signature. The transport's per-message slack (transport.MAX_MESSAGE) covers it.
MAX_CERT_LEN = 1 + 2 + 1 + MAX_CLUSTER_LEN + 32 + 8 + 8 + CERT_SIGNATURE_LEN
LIFETIME_S = 2 * 3600  # a certificate is valid this long ...
ROTATE_AFTER_S = 3600  # ... and replaced after this long, so what is sent always has an hour left
CLOCK_SKEW_S = 300  # receivers tolerate this much clock difference at either end of the window
_RETRY_S = 30  # after a failed rotation (HSM down), keep the current key and retry this much later

IdentitySigner = Callable[[bytes], bytes]
Clock = Callable[[], float]


class CertificateError(ValueError):
    """A certificate cannot be built (our fault) or parsed (the peer's fault)."""


def cluster_bytes(cluster: str) -> bytes:
    """What a certificate names for a cluster: a 32-byte digest of its roster name (names have no
    length limit; the digest keeps the certificate's size fixed)."""
    return hashlib.sha256(b"zrkeyring/cluster-name/v1" + cluster.encode("utf-8")).digest()


@dataclass(frozen=True)
class KeyCertificate:
    """The identity key's statement "this Ed25519 key speaks for party `party` of `cluster`"."""

    party: int
    cluster: bytes
    public_key: bytes
    not_before: int
    not_after: int
    signature: bytes = b""

    def signing_bytes(self) -> bytes:
        """What the identity key signs: the length-prefixed domain, then every field but the signature."""
        if not 1 <= self.party <= MAX_INDEX or len(self.cluster) > MAX_CLUSTER_LEN:
            raise CertificateError(f"party {self.party} or cluster of {len(self.cluster)} bytes out of range")
        if not 0 <= self.not_before <= self.not_after < 1 << 64:
            raise CertificateError(f"validity {self.not_before}..{self.not_after} out of range")
        return (Writer().var(CERT_DOMAIN).u8(CERT_VERSION).u16(self.party).u8(len(self.cluster))
                .fixed(self.cluster, len(self.cluster)).fixed(self.public_key, 32)
                .u64(self.not_before).u64(self.not_after).getvalue())

    def encode(self) -> bytes:
        if len(self.signature) != CERT_SIGNATURE_LEN:
            raise CertificateError("certificate is not signed")
        return self.signing_bytes()[4 + len(CERT_DOMAIN):] + self.signature

    @classmethod
    def decode(cls, data: bytes) -> KeyCertificate:
        try:
            r = Reader(data)
            version = r.u8()
            if version != CERT_VERSION:
                raise CertificateError(f"unsupported certificate version {version}")
            party = r.u16()
            cluster = r.fixed(r.u8())
            public_key, not_before, not_after = r.fixed(32), r.u64(), r.u64()
            signature = r.fixed(CERT_SIGNATURE_LEN)
            r.finish()
        except ProtocolAbort as exc:
            raise CertificateError(exc.reason) from None
        if not 1 <= party <= MAX_INDEX or len(cluster) > MAX_CLUSTER_LEN or not_before > not_after:
            raise CertificateError("certificate field out of range")
        return cls(party, cluster, public_key, not_before, not_after, signature)

    def verify(self, identity_key: bytes | VerifyKey) -> bool:
        """True when the identity key signed this certificate (no time or cluster check here)."""
        try:
            key = identity_key if isinstance(identity_key, VerifyKey) else VerifyKey(bytes(identity_key))
            key.verify(self.signing_bytes(), self.signature)
        except (BadSignatureError, CertificateError, ValueError, TypeError):
            return False
        return True

    def valid_at(self, now: float, skew: float = CLOCK_SKEW_S) -> bool:
        """Inside its window at `now` (with `skew`), and the window no longer than `LIFETIME_S`: a
        host that reached the HSM once cannot mint a certificate that outlives the hour it had."""
        return self.not_after - self.not_before <= LIFETIME_S and self.not_before - skew <= now <= self.not_after + skew


@dataclass(frozen=True)
class _Current:
    key: SigningKey
    certificate: bytes  # encoded
    made_at: float
    not_after: int


class EnvelopeKeys:
    """This process's envelope key and its certificate; rotates lazily when the current one ages.

    `sign_identity` is the HSM identity signer (called once per rotation, not per envelope);
    `random` (the HSM's, when given) is mixed with the OS RNG into the key seed. The private key
    is held only here; `repr` shows the certificate's public part only.
    """

    def __init__(self, me: int, cluster: str, sign_identity: IdentitySigner, *,
                 random: Callable[[int], bytes] | None = None, clock: Clock = time.time,
                 lifetime_s: int = LIFETIME_S, rotate_after_s: int = ROTATE_AFTER_S) -> None:
        if not 0 < rotate_after_s < lifetime_s:
            raise CertificateError("rotate_after_s must be positive and below lifetime_s")
        self.me = me
        self._cluster = cluster_bytes(cluster)
        self._sign_identity = sign_identity
        self._random = random
        self._clock = clock
        self._lifetime = lifetime_s
        self._rotate_after = rotate_after_s
        self._lock = threading.Lock()
        self._current: _Current | None = None
        self._retry_at = 0.0
        self.rotations = 0

    def __repr__(self) -> str:
        current = self._current
        public = current.key.verify_key.encode().hex()[:16] if current else "-"
        return f"EnvelopeKeys(party={self.me}, key={public}…)"

    def _seed(self) -> bytes:
        extra = self._random(32) if self._random is not None else b""
        return hashlib.sha256(b"zrkeyring/envelope-key-seed/v1" + secrets.token_bytes(32) + extra).digest()

    def _make(self, now: float) -> _Current:
        key = SigningKey(self._seed())
        cert = KeyCertificate(self.me, self._cluster, key.verify_key.encode(), int(now), int(now) + self._lifetime)
        signature = self._sign_identity(cert.signing_bytes())
        encoded = KeyCertificate(cert.party, cert.cluster, cert.public_key, cert.not_before, cert.not_after,
                                 bytes(signature)).encode()
        self.rotations += 1
        log.info("party %d: new envelope key %s… certified until %d", self.me,
                 cert.public_key.hex()[:16], cert.not_after)
        return _Current(key, encoded, now, cert.not_after)

    def current(self) -> tuple[SigningKey, bytes]:
        """(signing key, encoded certificate), making or rotating them first when due.

        A failed rotation (HSM unavailable) keeps the current key while its certificate still has
        more than the clock skew left, and tries again `_RETRY_S` later; otherwise it raises."""
        now = self._clock()
        with self._lock:
            cur = self._current
            if cur is None or (now - cur.made_at >= self._rotate_after and now >= self._retry_at):
                try:
                    cur = self._current = self._make(now)
                except Exception:
                    if cur is None or now > cur.not_after - CLOCK_SKEW_S:
                        raise
                    self._retry_at = now + _RETRY_S
                    log.warning("party %d: envelope key rotation failed; keeping the current key",
                                self.me, exc_info=True)
            return cur.key, cur.certificate
