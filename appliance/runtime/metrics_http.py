"""What every zrkeyring daemon's /metrics has in common: the HTTP endpoint, build info, HSM timings.

Each daemon declares its own metrics in its `metrics.py` (appliance/mpc_party/metrics.py,
appliance/controller/metrics.py), in its own registry made by `daemon_registry()`, with its own
`HsmMeters`: a daemon's endpoint then shows its own series and no other daemon's, even when both
modules are imported in one process (the CLI, tests, the demo).

Conventions (prometheus/client_python): names start with `zrkeyring_`, values are in base units
(seconds, bytes), counters end in `_total`, durations are `_seconds` histograms, and every label has a
small, fixed set of values (listed beside each metric) — never a request id, key id or address.
"""

from __future__ import annotations

import json
import logging
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    disable_created_metrics,
    make_wsgi_app,
)

from appliance.runtime.config import load_section, parse_port
from appliance.runtime.errors import ConfigError
from appliance.runtime.version import version

# Bucket edges for things that take milliseconds (one PKCS#11 call) and for protocol sessions (seconds).
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SESSION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# operation: seal, unseal, sign_identity, sign_chain, random, login, provision, status
HSM_OPERATIONS = ("seal", "unseal", "sign_identity", "sign_chain", "random", "login", "provision", "status")


def daemon_registry() -> CollectorRegistry:
    """A registry of one daemon's own metrics, with the build info every daemon exports.

    Why not prometheus_client's global REGISTRY: both daemons' modules are imported in one process
    (the CLI, tests, the demo), and a shared registry made each endpoint show the other daemon's
    series too (a party reporting `zrkeyring_controller_party_up 0` fired critical alerts).
    """
    registry = CollectorRegistry(auto_describe=True)
    build = Info("zrkeyring_build", "zrkeyring version and the Python it runs on (value is always 1).",
                 registry=registry)
    build.info({"version": version(), "python": platform.python_version()})
    return registry


class HsmMeters:
    """HSM timings and errors of one daemon, in that daemon's registry (all operations pre-created)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "zrkeyring_hsm_operation_duration_seconds",
            "Time spent in one HSM (PKCS#11) operation, queueing for the HSM worker included.",
            ["operation"], buckets=FAST_BUCKETS, registry=registry,
        )
        self.errors = Counter(
            "zrkeyring_hsm_errors_total",
            "HSM operations that failed (PKCS#11 error, token missing, login lost).",
            ["operation"], registry=registry,
        )
        for operation in HSM_OPERATIONS:
            self.seconds.labels(operation)
            self.errors.labels(operation)

    @contextmanager
    def operation(self, operation: str) -> Iterator[None]:
        """Time one HSM call and count it as an error if it raises: `with meters.operation("seal"): ...`."""
        if operation not in HSM_OPERATIONS:
            raise ValueError(f"unknown HSM operation label {operation!r} (known: {', '.join(HSM_OPERATIONS)})")
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.errors.labels(operation).inc()
            raise
        finally:
            self.seconds.labels(operation).observe(time.perf_counter() - start)


class MeteredHsm:
    """An Hsm whose calls on the daemons' hot paths are timed and error-counted; the rest pass through.

    Why a wrapper: the HSM layer stays free of metrics, and both daemons get the same labels (each in
    its own registry: `meters` is the daemon's `metrics.HSM`).
    """

    METERED = ("seal", "unseal", "sign_identity", "sign_chain", "random")

    def __init__(self, hsm: Any, meters: HsmMeters) -> None:
        self._hsm = hsm
        self._meters = meters

    @classmethod
    def wrap(cls, hsm: Any, meters: HsmMeters) -> Any:
        return hsm if isinstance(hsm, cls) else cls(hsm, meters)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._hsm, name)
        if name not in self.METERED:
            return target

        def metered(*args: Any, **kwargs: Any) -> Any:
            with self._meters.operation(name):
                return target(*args, **kwargs)

        return metered


@dataclass(frozen=True)
class MetricsSection:
    """The optional `[metrics]` table. Each daemon subclasses it with its own default address; an empty
    address (and so a config without the table, see `load_metrics_section`) means no /metrics server."""

    address: str = ""


M = TypeVar("M", bound=MetricsSection)


def load_metrics_section(data: dict[str, Any], cls: type[M]) -> M:
    """The `[metrics]` table as `cls`; without the table, `cls(address="")`: metrics switched off."""
    if "metrics" not in data:
        return cls(address="")
    section = load_section(data, "metrics", cls)
    if section.address:
        parse_address(section.address)  # fail at load time, naming the field
    return section


def serve_configured(section: MetricsSection, registry: CollectorRegistry,
                     health: Health | None = None) -> BoundedMetricsServer | None:
    """Start /metrics, /healthz and /readyz unless the daemon's config switches them off (call before
    opening the HSM); `registry` is the daemon's own (`metrics.REGISTRY`), `health` what it reports."""
    if not section.address:
        return None
    server = start_metrics_server(section.address, registry, health=health)
    logging.getLogger("zrkeyring").info("metrics on http://%s/metrics", section.address)
    return server


def parse_address(address: str, field: str = "metrics.address") -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all interfaces) into (host, port); errors name the field."""
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ConfigError(f"{field}: expected host:port, got {address!r}"[:300])
    number = parse_port(port, field, address, low=0)  # 0: any free port (tests)
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - an empty host is the operator asking for all
    return host, number


class Health:
    """What /healthz and /readyz answer: the daemon's main loop stores its latest readiness here.

    Why cached rather than checked per request: a readiness check talks to the chain; a scraper (or a
    stranger) hitting /readyz must not turn into chain traffic. Until the first `update` the daemon
    is starting and not ready.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reasons: tuple[str, ...] = ("starting",)

    def update(self, reasons: list[str] | tuple[str, ...]) -> None:
        """Record the latest check: no reasons means ready."""
        with self._lock:
            self._reasons = tuple(reasons)

    @property
    def reasons(self) -> tuple[str, ...]:
        with self._lock:
            return self._reasons

    @property
    def ready(self) -> bool:
        return not self.reasons


Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def daemon_app(registry: CollectorRegistry, health: Health) -> Wsgi:
    """The WSGI app: `/metrics` (Prometheus text), `/healthz` (200 while the process serves HTTP),
    `/readyz` (200 ready / 503 not ready with the reasons, as text or, with `Accept: application/json`
    or `?format=json`, as JSON); anything else is 404. Only `/metrics` returns metrics."""
    metrics_app = make_wsgi_app(registry)

    def reply(start_response: Callable[..., Any], status: str, body: bytes, kind: str) -> list[bytes]:
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            return reply(start_response, "200 OK", b"alive\n", "text/plain; charset=utf-8")
        if path == "/readyz":
            reasons = list(health.reasons)
            status = "200 OK" if not reasons else "503 Service Unavailable"
            wants_json = ("application/json" in environ.get("HTTP_ACCEPT", "")
                          or "format=json" in environ.get("QUERY_STRING", ""))
            if wants_json:
                body = json.dumps({"ready": not reasons, "reasons": reasons}).encode() + b"\n"
                return reply(start_response, status, body, "application/json")
            text = "ready\n" if not reasons else "not ready: " + "; ".join(reasons) + "\n"
            return reply(start_response, status, text.encode(), "text/plain; charset=utf-8")
        return reply(start_response, "404 Not Found", b"not found; try /metrics, /healthz or /readyz\n",
                     "text/plain; charset=utf-8")

    return app


# The /metrics server is reachable by whoever can reach its address, so it must not hand out a thread
# or a descriptor per connection for as long as the client likes (prometheus_client's own server does:
# 200 idle connections held 200 threads). A scrape is one short request.
METRICS_MAX_THREADS = 8  # connections served at once; more are closed at accept (Prometheus uses 1)
METRICS_IDLE_TIMEOUT_S = 5.0  # a connection silent this long mid-request is closed


class _QuietHandler(WSGIRequestHandler):
    """One request per connection (HTTP/1.0), closed after `timeout` seconds without a byte."""

    timeout = METRICS_IDLE_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Scrapes are not worth a log line each."""


class BoundedMetricsServer(ThreadingHTTPServer, WSGIServer):
    """A thread per connection, but at most `max_threads` of them: a connection beyond the cap is
    closed at once and counted in `refused` (a scraper retries at its next interval)."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # accept fast, then refuse: a full backlog would delay honest scrapes too
    max_threads = METRICS_MAX_THREADS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.max_threads)
        self.refused = 0
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An idle or broken client is routine here, not a traceback on stderr."""
        logging.getLogger("zrkeyring").debug("metrics: connection from %s dropped", client_address[0],
                                             exc_info=True)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def start_metrics_server(address: str, registry: CollectorRegistry, health: Health | None = None,
                         max_threads: int = METRICS_MAX_THREADS,
                         idle_timeout_s: float = METRICS_IDLE_TIMEOUT_S) -> BoundedMetricsServer:
    """Serve /metrics, /healthz, /readyz (`daemon_app`) on `address` from a daemon thread; returns the
    server (call `.shutdown()` to stop); `server.health` is `health` (a new, "starting" one if None).

    Port 0 picks a free port; read it back from `server.server_address[1]`. The `*_created` series are
    switched off for the process: they double the series count and no dashboard or alert uses them.
    At most `max_threads` connections are served at once, each closed after `idle_timeout_s` idle.
    """
    disable_created_metrics()
    host, port = parse_address(address)

    cap, idle = max_threads, idle_timeout_s

    class Server(BoundedMetricsServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        max_threads = cap

    class Handler(_QuietHandler):
        timeout = idle

    try:
        health = health or Health()
        server = make_server(host, port, daemon_app(registry, health), Server, handler_class=Handler)
    except OSError as exc:
        raise ConfigError(f"metrics.address: cannot listen on {address}: {exc.strerror or exc}") from None
    server.health = health
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
