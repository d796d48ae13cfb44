"""A TCP proxy on loopback that can drop every connection through it at once, the way a
network failure does: both sockets are aborted, no websocket close frame is sent. The cut can
be armed to come a while after the first websocket connection goes through
(``cut_after_websocket``), so it always falls inside a session, never before a client has
connected (bytes are no measure of audio: websocket compression shrinks silence and tones to
almost nothing). ``target_port`` may change between connections, as a load balancer picks
another server."""

from __future__ import annotations

import asyncio
import contextlib


class CuttingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self._cut_delay_s: float | None = None
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def cut_after_websocket(self, delay_s: float) -> None:
        """Cut ``delay_s`` after the next websocket upgrade passes through (once)."""
        self._cut_delay_s = delay_s

    def cut(self) -> None:
        self.cuts += 1
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers += [writer, upstream_writer]
        await asyncio.gather(
            self._pipe(reader, upstream_writer, from_client=True),
            self._pipe(upstream_reader, writer, from_client=False),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_client: bool
    ) -> None:
        first = from_client
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if (
                    first
                    and self._cut_delay_s is not None
                    and b"upgrade: websocket" in data.lower()
                ):
                    asyncio.get_running_loop().call_later(self._cut_delay_s, self.cut)
                    self._cut_delay_s = None
                first = False
                writer.write(data)
                await writer.drain()
        writer.close()
