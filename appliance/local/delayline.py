"""A TCP delay line: network latency for a bench where the kernel has no netem qdisc.

    python -m appliance.local.delayline --listen 10.213.7.11:7001 --to 127.0.0.1:7001 --delay-ms 25

Accepts connections on `--listen`, opens one to `--to` for each, and forwards bytes both ways, each
chunk held until `delay` after it arrived (arrival order kept, no bandwidth limit): a party behind it
answers every request `2 x delay` later than on loopback, as across a WAN link with that one-way
latency. TLS passes through untouched (the two ends still authenticate each other), so the daemon
behind it runs exactly as in production. Used by appliance/local/netns.py; never part of a keyring
host's install.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys

CHUNK = 1 << 16


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy reader to writer, each chunk written `delay_s` after it was read (a FIFO of due times)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def release() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(release())
    try:
        while data := await reader.read(CHUNK):
            queue.put_nowait((loop.time() + delay_s, data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0.0, b""))
    with contextlib.suppress(ConnectionError, OSError):
        await sender
        writer.write_eof()


async def _serve_one(target: tuple[str, int], delay_s: float, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    for w in (client_w, server_w):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.gather(_pump(client_r, server_w, delay_s), _pump(server_r, client_w, delay_s))
    finally:
        for w in (client_w, server_w):
            w.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(listen: tuple[str, int], target: tuple[str, int], delay_s: float,
                ready: asyncio.Future[int] | None = None) -> None:
    """Serve until cancelled; `ready` gets the port listened on (port 0 in `listen`: any free one)."""
    server = await asyncio.start_server(lambda r, w: _serve_one(target, delay_s, r, w), *listen)
    if ready is not None:
        ready.set_result(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="delayline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="host:port to accept connections on")
    parser.add_argument("--to", required=True, help="host:port to forward each connection to")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay per direction")
    args = parser.parse_args(argv)
    if not 0 <= args.delay_ms <= 10_000:
        parser.error("--delay-ms: must be 0..10000")
    print(f"delay line {args.listen} -> {args.to}, {args.delay_ms} ms each way", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(_address(args.listen), _address(args.to), args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
