"""The sandbox's helpers: running its async client from any caller, HTTP over a Unix socket."""

import asyncio

import pytest

from conveyor.delivery.sandbox import UnixHTTPConnection, run_sync


async def _answer(value):
    await asyncio.sleep(0)
    return value


def test_run_sync_works_with_and_without_a_running_loop():
    assert run_sync(_answer(1)) == 1

    async def caller():  # a notebook or an async agent calling deploy()
        return run_sync(_answer(2))

    assert asyncio.run(caller()) == 2


def test_a_unix_http_connection_reads_answers_and_keeps_alive(tmp_path):
    path = str(tmp_path / "s.sock")
    seen = []

    async def handle(reader, writer):
        while line := await reader.readline():
            if line == b"\r\n":
                seen.append("request")
                body = b'{"ok": true}'
                head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                writer.write(head + body)
                await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_unix_server(handle, path)
        async with server, UnixHTTPConnection(path, timeout=5) as conn:
            first = await conn.request("GET", "/a")
            second = await conn.request("POST", "/b", b"{}")
        return first, second

    first, second = asyncio.run(main())
    assert first.status == 200
    assert first.json() == {"ok": True}
    assert second.headers["content-length"] == "12"
    assert seen == ["request", "request"]  # one connection, two requests


def test_a_missing_socket_is_a_file_not_found_error(tmp_path):
    async def main():
        async with UnixHTTPConnection(str(tmp_path / "none.sock"), timeout=2) as conn:
            await conn.request("GET", "/")

    with pytest.raises(FileNotFoundError):
        asyncio.run(main())
