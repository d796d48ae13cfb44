"""Fuzzing the two doors: the websocket message decoder (hypothesis) and the REST API
(schemathesis against the server's own OpenAPI document). Every input is either accepted or
refused with an error the documentation lists, and a well-behaved session running at the same
time is served as if nothing happened."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading

import pytest
import schemathesis
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks as st_checks

from client.stream import stream_pcm
from server.backends.fake import ScriptedTranscriber
from server.core import protocol
from server.core.errors import InvalidMessage
from server.web.app import create_app
from tests.audio import bursts, pcm16
from tests.support import ROOT, TIMEOUT_S, fake_settings, running_server

SPEECH = pcm16(bursts(300, 1200, 900, 1200, 900))


def documented_codes() -> set[str]:
    """The error codes in docs/protocol.md's tables: the contract the fuzzing holds us to."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    errors = text[text.index("## Errors") :]
    return set(re.findall(r"^\| `([a-z_]+)` \|", errors, re.MULTILINE))


DOCUMENTED = documented_codes()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
message_types = st.sampled_from(
    ["session.update", "input_audio.commit", "utterance.retry", "session.close", "bogus", ""]
)
client_messages = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.builds(
        lambda kind, extra: json.dumps({"type": kind, **extra}),
        message_types,
        st.dictionaries(st.sampled_from(["session", "utterance_id", "x"]), json_values, max_size=2),
    ),
)


@given(client_messages)
@settings(max_examples=400, deadline=None)
def test_the_message_decoder_accepts_or_refuses_with_a_documented_code(text):
    try:
        message = protocol.parse_client_message(text)
    except InvalidMessage as exc:
        assert exc.code in DOCUMENTED, exc.code
    else:
        assert isinstance(
            message, protocol.SessionUpdate | protocol.Commit | protocol.Close | protocol.Retry
        )


@pytest.fixture(scope="module")
def server():
    app = create_app(
        fake_settings(max_message_bytes=64 * 1024),
        ScriptedTranscriber(["steady words"]),
    )
    with running_server(app) as running:
        yield running


class Bystander:
    """A well-behaved session streaming at real-time pace in its own thread while the fuzzing
    runs; its transcript must come out whole."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.result = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.join(TIMEOUT_S)

    def _run(self) -> None:
        try:
            self.result = asyncio.run(stream_pcm(self.url, SPEECH * 2, speed=1.0))
        except BaseException as exc:
            self.error = exc

    def assert_served(self) -> None:
        assert self.error is None, self.error
        assert self.result is not None
        assert [f["text"] for f in self.result.finals] == ["steady words"] * 4
        assert not self.result.of_type("error")


websocket_inputs = st.lists(
    st.one_of(client_messages, st.binary(max_size=3000)), min_size=1, max_size=12
)


def test_fuzzed_websocket_sessions_get_documented_errors_only(server):
    seen_codes: set[str] = set()

    async def fuzz_session(inputs) -> None:
        async with websockets.connect(server.ws_url) as websocket:
            await websocket.recv()  # session.created
            with contextlib.suppress(websockets.ConnectionClosed):
                for item in inputs:
                    await websocket.send(item)
                await websocket.send(json.dumps({"type": "session.close"}))
                while True:
                    event = json.loads(await asyncio.wait_for(websocket.recv(), TIMEOUT_S))
                    if event["type"] == "error":
                        seen_codes.add(event["code"])
                    if event["type"] == "session.closed":
                        break
            assert websocket.close_code in (None, 1000, 1008), websocket.close_code

    @given(websocket_inputs)
    @settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def fuzz(inputs):
        asyncio.run(asyncio.wait_for(fuzz_session(inputs), TIMEOUT_S))

    with Bystander(server.ws_url) as bystander:
        fuzz()
    bystander.assert_served()
    assert seen_codes and seen_codes <= DOCUMENTED, seen_codes - DOCUMENTED


REST_CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]


def test_the_rest_api_holds_to_its_openapi_document_under_fuzzing(server):
    schema = schemathesis.openapi.from_url(server.http_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /v1/audio/transcriptions",
        "POST /v1/audio/translations",
        "GET /v1/models/{model_id}",
    }
    with Bystander(server.ws_url) as bystander:
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=40,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def fuzz(case):
                case.call_and_validate(base_url=server.http_url, checks=REST_CHECKS)

            fuzz()
    bystander.assert_served()
