"""The TCP delay line of the WAN bench (appliance/local/delayline.py): bytes arrive intact and in order,
and a round trip through it takes at least twice the one-way delay (and not much more)."""

from __future__ import annotations

import asyncio
import time

from appliance.local import delayline

DELAY_S = 0.05


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _through_the_line() -> tuple[list[float], bytes, bytes]:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    line = asyncio.create_task(delayline.serve(("127.0.0.1", 0), ("127.0.0.1", echo.sockets[0].getsockname()[1]),
                                               DELAY_S, ready))
    reader, writer = await asyncio.open_connection("127.0.0.1", await ready)
    times = []
    for i in range(3):
        started = time.perf_counter()
        writer.write(b"ping %d" % i)
        await writer.drain()
        assert await reader.readexactly(6) == b"ping %d" % i
        times.append(time.perf_counter() - started)
    bulk = bytes(range(256)) * 2048  # 512 KiB, forwarded in many chunks
    writer.write(bulk)
    await writer.drain()
    echoed = await asyncio.wait_for(reader.readexactly(len(bulk)), 30)
    writer.close()
    line.cancel()
    echo.close()
    return times, bulk, echoed


def test_round_trips_take_twice_the_delay_and_bytes_arrive_in_order() -> None:
    times, bulk, echoed = asyncio.run(_through_the_line())
    assert echoed == bulk
    assert min(times) >= 2 * DELAY_S
    assert sorted(times)[1] < 2 * DELAY_S + 2.0  # generous: a loaded host may be slow, never early


def test_the_delay_is_bounded() -> None:
    import pytest

    with pytest.raises(SystemExit):
        delayline.main(["--listen", "127.0.0.1:1", "--to", "127.0.0.1:2", "--delay-ms", "-1"])
