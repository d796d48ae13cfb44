"""Translations and language detection with the multilingual bundled ``base`` model."""

from __future__ import annotations

import openai
import pytest

from server.settings import ServerSettings
from server.web.app import create_app
from tests.support import TIMEOUT_S, require_model, running_server, shared_file

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def client():
    require_model("base")
    settings = ServerSettings(model="base", compute_type="int8", beam_size=1)
    with running_server(create_app(settings)) as server:
        yield openai.OpenAI(
            base_url=server.http_url + "/v1", api_key="x", timeout=TIMEOUT_S * 6, max_retries=0
        )


@pytest.mark.parametrize(
    ("name", "keywords"),
    [
        ("de_picovoice.wav", {"portal", "room"}),
        ("fr_dictee.wav", {"dictation"}),
        ("es_picovoice.wav", {"sand", "grain"}),
    ],
)
def test_german_french_spanish_are_translated_to_english(client, name, keywords):
    text = client.audio.translations.create(
        model="whisper-1", file=shared_file(name).open("rb"), response_format="text"
    ).lower()
    assert any(keyword in text for keyword in keywords), text


def test_translation_verbose_json_names_the_task_and_source_language(client):
    result = client.audio.translations.create(
        model="whisper-1", file=shared_file("de_picovoice.wav").open("rb"),
        response_format="verbose_json",
    )  # fmt: skip
    assert result.task == "translate" and result.language == "german"


@pytest.mark.parametrize(
    ("name", "language"),
    [
        ("de_librivox_simplicissimus.mp3", "german"),
        ("fr_readalong_ej.m4a", "french"),
        ("en_librivox_sonnet001.mp3", "english"),
    ],
)
def test_language_is_detected_on_the_long_files(client, name, language):
    result = client.audio.transcriptions.create(
        model="whisper-1", file=shared_file(name).open("rb"), response_format="verbose_json"
    )
    assert result.language == language
