"""A logged-in session on one token, reopened transparently when it is lost.

All methods run on the worker thread (see worker.py). A `TokenLink` holds the label and PIN, finds the
token, logs in, caches key handles, and retries an operation once after a lost session
(CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN, a stale key handle after a
logout, device removal, or a module re-initialisation by another link in the same process).

When the retry fails too (the token or module is unusable for a while: SoftHSM out of descriptors,
an HSM rebooting, a network HSM unreachable), the call raises `HsmUnavailable`, `ready` turns False,
and the link keeps re-initialising the module, reopening and logging in on its own, with backoff
from RECOVER_FIRST_S up to RECOVER_MAX_S, until it works; then `ready` is True again. Why: a party
whose HSM recovered must not need a restart (a restart is itself a risk, see docs/operations.md).
"""

from __future__ import annotations

import logging
import threading
import time
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
# The module or device failed as a whole (SoftHSM answers CKR_GENERAL_ERROR when it cannot open its
# token files, e.g. out of descriptors); after a link has worked once, these mean "not now", not "wrong".
MODULE_FAILURE_ERRORS: tuple[type[Exception], ...] = (
    p11.GeneralError,
    p11.DeviceError,
    p11.DeviceMemory,
    p11.HostMemory,
    p11.FunctionFailed,
)
RECOVER_FIRST_S = 0.2
RECOVER_MAX_S = 5.0


class HsmUnavailable(HsmError):
    """The token cannot be used right now; the link is reconnecting in the background."""


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
        self._ever_ready = False
        self.ready = False  # a session worked for the last call (or recovery attempt); read from any thread
        self.last_error = ""
        self.recoveries = 0  # outages recovered from, for tests and status
        self._recover_lock = threading.Lock()
        self._recover_timer: threading.Timer | None = None
        self._recover_delay = RECOVER_FIRST_S
        self._closed = False

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
        """Run `fn(self, *args)`, reopening the session and retrying once if it was lost; if that fails
        too, raise HsmUnavailable and keep reconnecting in the background (see the module docstring)."""
        self.worker.assert_on_worker()
        for attempt in range(2):
            try:
                self.ensure_session()
                result = fn(self, *args)
            except Exception as exc:
                if not self._is_outage(exc):
                    raise
                log.info("HSM session on token %r lost (%s); reopening", self.label, type(exc).__name__)
                self.drop_session()
                if attempt:
                    self._went_unavailable(exc)
                    raise HsmUnavailable(f"token {self.label!r} is unavailable ({type(exc).__name__}: "
                                         f"{exc}); reconnecting in the background") from None
                continue
            self._mark_ready()
            return result
        raise AssertionError("unreachable")

    def _is_outage(self, exc: Exception) -> bool:
        """A lost session always; a failed module or a vanished token only once this link has worked
        (before that, the same errors are configuration mistakes and must surface as they are)."""
        if isinstance(exc, LOST_SESSION_ERRORS):
            return True
        if not self._ever_ready:
            return False
        if isinstance(exc, (*MODULE_FAILURE_ERRORS, TokenNotFoundError)):
            return True
        return type(exc) is p11.PKCS11Error  # e.g. "not initialized" after a failed C_Initialize

    def _mark_ready(self) -> None:
        if not self.ready and self._ever_ready:
            self.recoveries += 1
            log.warning("HSM token %r is usable again", self.label)
        self._ever_ready = self.ready = True
        self.last_error = ""
        with self._recover_lock:
            self._recover_delay = RECOVER_FIRST_S

    def _went_unavailable(self, exc: Exception) -> None:
        if self.ready:
            log.error("HSM token %r is unavailable (%s: %s); the party reports not ready until it is back",
                      self.label, type(exc).__name__, exc)
        self.ready = False
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._schedule_recovery()

    def _schedule_recovery(self) -> None:
        """Arm one background attempt (any thread); attempts double their delay up to RECOVER_MAX_S."""
        with self._recover_lock:
            if self._closed or self._recover_timer is not None:
                return
            delay = self._recover_delay
            self._recover_delay = min(delay * 2, RECOVER_MAX_S)
            timer = threading.Timer(delay, self._recover_from_timer)
            timer.daemon = True
            self._recover_timer = timer
        timer.start()

    def _recover_from_timer(self) -> None:
        with self._recover_lock:
            self._recover_timer = None
        if self._closed or self.ready:
            return
        started = time.monotonic()
        try:
            self.worker.call(self.run, _probe)
        except HsmUnavailable:
            log.debug("HSM token %r still unavailable after %.2f s attempt", self.label,
                      time.monotonic() - started)  # run() armed the next attempt
        except Exception as exc:  # noqa: BLE001 - a recovery thread must never die silently
            log.warning("HSM token %r: reconnect attempt failed: %r", self.label, exc)
            self._schedule_recovery()

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
        self.worker.ensure_initialized()
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
        """Log out and close the session (worker thread); stops background reconnecting."""
        with self._recover_lock:
            self._closed = True
            timer, self._recover_timer = self._recover_timer, None
        if timer is not None:
            timer.cancel()
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


def _probe(link: TokenLink) -> None:
    """A cheap call through a logged-in session (opening it is the real test: find, login)."""
    link.session.generate_random(64)
