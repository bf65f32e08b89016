"""A man in the middle for chain traffic, on loopback: a gRPC proxy that can rewrite answers.

It forwards every unary call byte for byte to the real node (plaintext, or TLS pinned to the node's
CA: an attacker can be a client of the node like anyone), copies the node's height header back, and
lets a `tamper` function replace the answer of chosen methods — to invent a request the node does not
hold, or to change a real request's data. Towards the party it serves plaintext, or TLS with a
certificate of its own (`serve_tls`): what an attacker on the path has, since it lacks the node's key.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures

import grpc

from chain_client.client import is_not_found
from chain_node.local import NodeTls, free_port

# (method path, request bytes, the node's answer or None for NOT_FOUND) -> bytes to send, or None to pass
Tamper = Callable[[str, bytes, bytes | None], bytes | None]


class ChainProxy:
    """Listen on a free 127.0.0.1 port, forward to `upstream`; `calls` counts what passed through."""

    def __init__(self, upstream: str, tamper: Tamper, upstream_ca: bytes = b"",
                 serve_tls: NodeTls | None = None) -> None:
        self.upstream, self.tamper = upstream, tamper
        if upstream_ca:
            self._channel = grpc.secure_channel(upstream, grpc.ssl_channel_credentials(upstream_ca))
        else:
            self._channel = grpc.insecure_channel(upstream)
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.calls: list[str] = []
        self.tampered: list[str] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers([_Handler(self)])
        if serve_tls is None:
            self._server.add_insecure_port(self.endpoint)
        else:
            pair = (serve_tls.key.read_bytes(), serve_tls.cert.read_bytes())
            self._server.add_secure_port(self.endpoint, grpc.ssl_server_credentials([pair]))

    def start(self) -> ChainProxy:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(0.2).wait()
        self._channel.close()

    def forward(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls.append(method)
        call = self._channel.unary_unary(method)  # raw bytes both ways
        try:
            answer, rpc = call.with_call(request, timeout=5)
            metadata, found = rpc.initial_metadata(), answer
        except grpc.RpcError as exc:
            metadata, found = exc.initial_metadata(), None
            if not is_not_found(exc):
                context.abort(exc.code(), exc.details())
            replaced = self.tamper(method, request, None)
            context.send_initial_metadata(tuple(metadata or ()))
            if replaced is None:
                context.abort(exc.code(), exc.details())
            self.tampered.append(method)
            return replaced
        context.send_initial_metadata(tuple(metadata or ()))
        replaced = self.tamper(method, request, found)
        if replaced is None:
            return found
        self.tampered.append(method)
        return replaced


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: ChainProxy) -> None:
        self.proxy = proxy

    def service(self, handler_call_details):
        method = handler_call_details.method
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self.proxy.forward(method, request, context))
