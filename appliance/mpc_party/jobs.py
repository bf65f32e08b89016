"""What the party checks on chain before it helps with a job its controller asked for.

Parties trust the chain, not each other (nor even their controller's word for the data): before
contributing to a session, a party re-reads the request from the chain itself and checks that it
exists, is addressed to this keyring, is still PENDING or PARTIAL, and that the key and the data to
sign are exactly what the request holds. The session id is recomputed here from the chain request, so
a peer cannot steer this party into a session for anything the chain did not ask for.

"The chain" is what the reader says: with `[chain] agree = k` an AgreeingReader
(chain_client/agreement.py) that answers only when k endpoints return identical data; its
ChainDisagreement becomes a RequestRefused naming the endpoints and what differed. A chain that cannot
be reached at all (ChainUnavailable, e.g. a TLS handshake failing against the pinned CA) is refused too:
the party never contributes on an answer it could not authenticate.
"""

from __future__ import annotations

from typing import Any, Protocol

from appliance.mpc_party.local_api import Job, KeygenJob, SignJob
from appliance.rules.attempts import session_id
from appliance.rules.keytypes import parse_key_type
from chain_client.errors import ChainDisagreement, ChainUnavailable

OPEN_KEY_STATUSES = {"KEY_REQUEST_STATUS_PENDING", "KEY_REQUEST_STATUS_PARTIAL"}
OPEN_SIGN_STATUSES = {"SIGN_REQUEST_STATUS_PENDING", "SIGN_REQUEST_STATUS_PARTIAL"}


class RequestRefused(Exception):
    """The chain does not hold what the job claims; the party will not contribute."""


class ChainReader(Protocol):
    """The queries the check needs (chain_client.client.ChainClient provides them)."""

    def key_request(self, request_id: int): ...
    def sign_request(self, request_id: int): ...
    def key(self, key_id: int): ...


class KeyCache:
    """A ChainReader whose `key(id)` answers from memory once the chain has named the key.

    What the check reads of a key — its public key and its keyring — never changes on zrChain once the
    key exists (keys are neither deleted nor re-keyed; only their sign policy can change, which the
    check does not read), so the agreed answer for a key id is as good on the thousandth signing job as
    on the first, and each job saves one query (k of them with `agree` = k). Requests are always read
    afresh: their status and data are what the check is about. A key the chain does not know is not
    remembered.
    """

    def __init__(self, reader: ChainReader, limit: int = 65536) -> None:
        self.reader, self.limit = reader, limit
        self._keys: dict[int, Any] = {}

    def key_request(self, request_id: int):
        return self.reader.key_request(request_id)

    def sign_request(self, request_id: int):
        return self.reader.sign_request(request_id)

    def key(self, key_id: int):
        found = self._keys.get(key_id)
        if found is None:
            found = self.reader.key(key_id)
            if found is not None:
                if len(self._keys) >= self.limit:
                    self._keys.pop(next(iter(self._keys)))
                self._keys[key_id] = found
        return found


def job_session_id(job: Job, chain_id: str, keyring: str) -> bytes:
    """The session id bound to the job's member set: the signers, or the keygen participants."""
    if isinstance(job, KeygenJob):
        return session_id(chain_id, keyring, job.kind, job.request_id, job.attempt, job.parties)
    return session_id(chain_id, keyring, job.kind, job.request_id, job.attempt, job.signers, job.retry)


def check_on_chain(job: Job, chain: ChainReader, keyring: str) -> Any:
    """Raise RequestRefused unless the chain holds exactly this request for this keyring; returns the
    request as read (so later checks use this agreed answer instead of asking the chain again)."""
    try:
        if isinstance(job, KeygenJob):
            return _check_keygen(job, chain, keyring)
        return _check_sign(job, chain, keyring)
    except ChainDisagreement as exc:
        raise RequestRefused(f"no agreed chain answer: {exc}") from None
    except ChainUnavailable as exc:
        raise RequestRefused(f"chain unreachable, nothing to check against: {exc}") from None


def _check_keygen(job: KeygenJob, chain: ChainReader, keyring: str) -> Any:
    req = chain.key_request(job.request_id)
    if req is None:
        raise RequestRefused(f"key request {job.request_id} does not exist on chain")
    if req.keyring_addr != keyring:
        raise RequestRefused(f"key request {job.request_id} is for keyring {req.keyring_addr}, not {keyring}")
    if req.status not in OPEN_KEY_STATUSES:
        raise RequestRefused(f"key request {job.request_id} is {req.status}")
    if req.key_type != job.key_type or parse_key_type(job.key_type) is None:
        raise RequestRefused(f"key request {job.request_id} asks for {req.key_type}, job says {job.key_type}")
    return req


def _check_sign(job: SignJob, chain: ChainReader, keyring: str) -> Any:
    req = chain.sign_request(job.request_id)
    if req is None:
        raise RequestRefused(f"signature request {job.request_id} does not exist on chain")
    if req.status not in OPEN_SIGN_STATUSES:
        raise RequestRefused(f"signature request {job.request_id} is {req.status}")
    if list(req.key_ids) != [job.key_id] or req.key_type != job.key_type:
        raise RequestRefused(f"signature request {job.request_id} is for keys {list(req.key_ids)} "
                             f"({req.key_type}), job says {job.key_id} ({job.key_type})")
    if list(req.data_for_signing) != [job.data]:
        raise RequestRefused(f"signature request {job.request_id} holds different data to sign")
    key = chain.key(job.key_id)
    if key is None or key.keyring_addr != keyring:
        raise RequestRefused(f"key {job.key_id} is not a key of keyring {keyring}")
    if bytes(key.public_key) != job.public_key:
        raise RequestRefused(f"key {job.key_id} has a different public key on chain")
    return req
