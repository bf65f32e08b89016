"""One thread per process owns every PKCS#11 call.

Why: python-pkcs11 initialises the module with `C_Initialize(NULL)` (no locking callbacks) and drops the
GIL around each call, and SoftHSM then runs without its own locks: two threads using sessions at once
crash the process (SIGSEGV, heap corruption). So every call into the module, for every token, runs on a
single worker thread per module path. Callers on any thread get `concurrent.futures.Future`s (asyncio
code can `asyncio.wrap_future` them) or use the blocking `call`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pkcs11
from pkcs11.exceptions import PKCS11Error

from appliance.hsm.errors import ModuleLoadError

T = TypeVar("T")
log = logging.getLogger(__name__)


class HsmWorker:
    """The single thread that talks to one PKCS#11 module. Get it with `HsmWorker.for_module(path)`."""

    _registry: dict[str, HsmWorker] = {}
    _registry_lock = threading.Lock()

    def __init__(self, module: str) -> None:
        self.module = module
        # max_workers=1: the executor creates exactly one thread and keeps it for its lifetime.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsm-worker")
        self._thread_ident: int | None = None
        self._lib: Any = None
        self.generation = 0  # bumped by every C_Finalize/C_Initialize; older sessions are void

    @classmethod
    def for_module(cls, module: str) -> HsmWorker:
        """The process-wide worker for `module` (keyed by its real path)."""
        key = os.path.realpath(module)
        with cls._registry_lock:
            worker = cls._registry.get(key)
            if worker is None:
                worker = cls._registry[key] = cls(module)
            return worker

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run `fn(*args)` on the worker thread; returns a future for its result."""
        return self._executor.submit(self._run, fn, *args)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking form of `submit`. Must not be called from the worker thread itself."""
        if threading.get_ident() == self._thread_ident:
            return fn(*args)
        return self.submit(fn, *args).result()

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        self._thread_ident = threading.get_ident()
        return fn(*args)

    def assert_on_worker(self) -> None:
        """Guard for code that touches PKCS#11 objects: it must run on this worker's thread."""
        if threading.get_ident() != self._thread_ident:
            raise RuntimeError("PKCS#11 call outside the HSM worker thread")

    @property
    def lib(self) -> Any:
        """The loaded module (worker thread only); loads it on first use with clear errors."""
        self.assert_on_worker()
        if self._lib is None:
            self._lib = load_module(self.module)
        return self._lib

    def reinitialize(self) -> None:
        """C_Finalize + C_Initialize: makes the module re-read its config and rescan tokens.

        SoftHSM only discovers tokens created by other processes (softhsm2-util) at C_Initialize.
        Every open session dies, so the generation counter tells token links to reopen and log in.
        The counter moves even when C_Initialize fails (e.g. the process is out of descriptors): the
        module is then left finalized, and `ensure_initialized` retries the C_Initialize later.
        """
        self.assert_on_worker()
        log.debug("re-initialising PKCS#11 module %s", self.module)
        lib = self.lib
        self.generation += 1
        try:
            lib.finalize()
        except PKCS11Error as exc:  # python-pkcs11 marks the module finalized either way
            log.debug("C_Finalize on %s failed: %r", self.module, exc)
        lib.initialize()

    def ensure_initialized(self) -> None:
        """C_Initialize again if an earlier re-initialisation left the module finalized.

        Why: python-pkcs11 remembers whether C_Initialize succeeded; without this, one failed
        re-initialisation would leave every later call answering "not initialized" until a restart.
        """
        lib = self.lib
        if not lib.initialized:
            log.info("PKCS#11 module %s is not initialised; initialising it again", self.module)
            self.generation += 1
            lib.initialize()


def load_module(module: str) -> Any:
    """Load a PKCS#11 library by path, naming what is wrong if it cannot be used."""
    if not os.path.exists(module):
        raise ModuleLoadError(f"hsm.module: PKCS#11 module {module} does not exist")
    if not os.path.isfile(module):
        raise ModuleLoadError(f"hsm.module: {module} is not a file")
    try:
        return pkcs11.lib(module)
    except PKCS11Error as exc:
        raise ModuleLoadError(
            f"hsm.module: {module} is not a usable PKCS#11 library ({exc or type(exc).__name__})"
        ) from None
