"""A logged-in session on one token, reopened transparently when it is lost.

All methods run on the worker thread (see worker.py). A `TokenLink` holds the label and PIN, finds the
token, logs in, caches key handles, and retries an operation once after a lost session
(CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN, a stale key handle after a
logout, device removal, or a module re-initialisation by another link in the same process).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from pkcs11 import TokenFlag
from pkcs11 import exceptions as p11

from appliance.hsm.errors import HsmError, PinIncorrectError, PinLockedError, TokenNotFoundError
from appliance.hsm.worker import HsmWorker

T = TypeVar("T")
log = logging.getLogger(__name__)

LOST_SESSION_ERRORS: tuple[type[Exception], ...] = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.UserNotLoggedIn,
    p11.DeviceRemoved,
    p11.TokenNotPresent,
    # cached key handles go stale when the process is logged out of the token (e.g. another handle on
    # the same token closed its session): private objects vanish from view until the next login
    p11.ObjectHandleInvalid,
    p11.KeyHandleInvalid,
)


def find_token(worker: HsmWorker, label: str) -> Any:
    """The token labelled `label`; re-initialises the module once to pick up newly created tokens."""
    for attempt in range(2):
        tokens = present_tokens(worker)
        matches = [t for t in tokens if t.label == label]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise TokenNotFoundError(f"hsm.token_label: {len(matches)} tokens are labelled {label!r}")
        if attempt == 0:
            worker.reinitialize()
    labels = ", ".join(repr(t.label) for t in tokens if t.label) or "none"
    raise TokenNotFoundError(
        f"hsm.token_label: no token labelled {label!r} in {worker.module} (labels present: {labels})"
    )


def present_tokens(worker: HsmWorker) -> list[Any]:
    """Initialised tokens visible through the module (SoftHSM's spare empty slot is skipped)."""
    tokens = []
    for slot in worker.lib.get_slots(token_present=True):
        try:
            token = slot.get_token()
        except (p11.TokenNotPresent, p11.TokenNotRecognised, p11.GeneralError):
            # GeneralError: SoftHSM answers so for a token whose files were deleted since C_Initialize
            continue
        if token.flags & TokenFlag.TOKEN_INITIALIZED:
            tokens.append(token)
    return tokens


class TokenLink:
    """A token plus the credentials to use it; owns at most one session at a time."""

    def __init__(self, worker: HsmWorker, label: str, pin: str) -> None:
        self.worker = worker
        self.label = label
        self._pin = pin
        self._session: Any = None
        self._token: Any = None
        self._generation = -1
        self._keys: dict[tuple[str, int], Any] = {}

    def __repr__(self) -> str:
        return f"TokenLink(module={self.worker.module!r}, label={self.label!r})"

    # --- called from any thread -------------------------------------------------------------------
    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run `fn(link, *args)` on the worker with a live session; returns a future."""
        return self.worker.submit(self.run, fn, *args)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking form of `submit`."""
        return self.worker.call(self.run, fn, *args)

    # --- worker thread only -----------------------------------------------------------------------
    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(self, *args)`, reopening the session and retrying once if it was lost."""
        self.worker.assert_on_worker()
        for attempt in range(2):
            self.ensure_session()
            try:
                return fn(self, *args)
            except LOST_SESSION_ERRORS as exc:
                log.info("HSM session on token %r lost (%s); reopening", self.label, type(exc).__name__)
                self.drop_session()
                if attempt:
                    raise HsmError(f"token {self.label!r}: session lost twice in a row ({exc!r})") from None
        raise AssertionError("unreachable")

    @property
    def session(self) -> Any:
        self.ensure_session()
        return self._session

    @property
    def token(self) -> Any:
        self.ensure_session()
        return self._token

    def ensure_session(self) -> None:
        """Open and log in a session if there is none or the module was re-initialised since."""
        self.worker.assert_on_worker()
        if self._session is not None and self._generation == self.worker.generation:
            return
        self._session = None
        self._keys.clear()
        token = find_token(self.worker, self.label)
        try:
            try:
                session = token.open(user_pin=self._pin, rw=True)
            except p11.UserAlreadyLoggedIn:
                # Login state is per process and token: another link here is logged in, and every
                # session of this process on the token shares that login.
                session = token.open(rw=True)
        except p11.PinIncorrect:
            raise PinIncorrectError(f"token {self.label!r}: the user PIN was rejected (wrong PIN)") from None
        except p11.PinLocked:
            raise PinLockedError(
                f"token {self.label!r}: the user PIN is locked after too many wrong attempts; "
                "the security officer must unlock it (softhsm2-util or the HSM's admin tool)"
            ) from None
        except p11.UserPinNotInitialized:
            raise HsmError(f"token {self.label!r}: the user PIN is not initialised") from None
        self._token, self._session, self._generation = token, session, self.worker.generation
        log.debug("opened HSM session on token %r", self.label)

    def drop_session(self) -> None:
        """Forget the session (best-effort close); the next call reopens and logs in again."""
        session, self._session = self._session, None
        self._keys.clear()
        if session is not None and self._generation == self.worker.generation:
            try:
                session.close()
            except p11.PKCS11Error:
                pass

    def close(self) -> None:
        """Log out and close the session (worker thread)."""
        self.drop_session()

    def drop_cached_keys(self) -> None:
        """Forget cached key handles (after keys were created or destroyed)."""
        self._keys.clear()

    def cached_key(self, name: tuple[str, int], find: Callable[[Any], Any]) -> Any:
        """Key object handles are looked up once per session."""
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = find(self.session)
        return key
