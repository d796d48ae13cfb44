"""Limits are paid before the input: a body over the upload limit is refused while it arrives,
and audio that decodes longer than the duration limit is refused before it is held."""

from __future__ import annotations

import select
import socket
import time

import httpx

from server.backends.fake import ScriptedTranscriber
from server.web.app import create_app
from tests.audio import wav_bytes
from tests.support import TIMEOUT_S, fake_settings, running_server

MIB = 1024 * 1024


def chunked_upload(port: int, *, total_bytes: int) -> tuple[int, bytes]:
    """POST a multipart file of ``total_bytes`` with no Content-Length, a MiB chunk at a time,
    until the server answers. Returns the bytes sent by then and the answer's first bytes."""
    boundary = "streamscribe-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    sock.sendall(
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Transfer-Encoding: chunked\r\n"
        + f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
    )
    sent = 0
    chunk = b"\x00" * MIB
    try:
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        while sent < total_bytes:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server answered before the body ended
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading: its answer is waiting
    answer = sock.recv(4096)
    sock.close()
    return sent, answer


def test_a_chunked_upload_over_the_limit_is_refused_while_it_arrives():
    settings = fake_settings(max_upload_bytes=8 * MIB)
    with running_server(create_app(settings, ScriptedTranscriber(["x"]))) as server:
        sent, answer = chunked_upload(server.port, total_bytes=40 * MIB)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"max_upload_bytes" in answer and b"file_too_large" in answer
    assert sent < 40 * MIB  # refused long before the whole body was sent


def test_audio_over_the_duration_limit_is_refused_within_seconds():
    settings = fake_settings(max_audio_duration_s=30)
    with running_server(create_app(settings, ScriptedTranscriber(["x"]))) as server:
        started = time.monotonic()
        response = httpx.post(
            server.http_url + "/v1/audio/transcriptions",
            files={"file": ("long.wav", wav_bytes(b"\x00\x00" * 16_000 * 90))},
            data={"model": "whisper-1"},
            timeout=TIMEOUT_S,
        )
        elapsed_s = time.monotonic() - started
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "audio_too_long" and "max_audio_duration_s" in error["message"]
    assert error["param"] == "file" and elapsed_s < 10
