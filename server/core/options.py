"""Per-session options: what a client may set with query parameters or ``session.update``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from server.core.errors import InvalidMessage
from vad.resample import SUPPORTED_RATES_HZ
from vad.segmenter import SegmenterOptions

SampleRate = Literal[8000, 16000, 24000, 44100, 48000]
assert set(SUPPORTED_RATES_HZ) == {8000, 16000, 24000, 44100, 48000}

# Options that shape how audio is read; they cannot change once audio has arrived.
AUDIO_FORMAT_OPTIONS = frozenset(
    {"sample_rate", "encoding", "vad", "vad_aggressiveness", "vad_threshold"}
)
Encoding = Literal["pcm16", "g711_ulaw", "g711_alaw"]
MAX_KEYWORDS = 100
MAX_KEYWORD_CHARS = 50


class SessionOptions(BaseModel):
    """Everything a client can tune about its session. Unknown keys are refused, not ignored,
    so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: SampleRate = 16000
    encoding: Encoding = Field(
        default="pcm16",
        description="pcm16 (little-endian), or G.711 g711_ulaw / g711_alaw at 8 kHz",
    )
    language: str | None = Field(default=None, description="ISO-639-1 code; None detects it")
    model: str | None = None
    prompt: str = Field(default="", max_length=2000, description="static prompt or glossary")
    vad: Literal["webrtc", "silero"] = "webrtc"
    vad_aggressiveness: int = Field(default=2, ge=0, le=3)
    vad_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    prefix_padding_ms: int = Field(default=300, ge=0, le=2000)
    silence_duration_ms: int = Field(default=500, ge=100, le=10_000)
    min_speech_duration_ms: int = Field(default=250, ge=0, le=5000)
    max_utterance_duration_ms: int = Field(default=15_000, ge=2000, le=28_000)
    turn_detection: Literal["vad", "manual"] = Field(
        default="vad",
        description="vad: silence ends an utterance; manual: only a commit (or "
        "max_utterance_duration_ms) does",
    )
    word_timestamps: bool = Field(
        default=False, description="finals carry their words with times and probabilities"
    )
    include: tuple[Literal["words"], ...] = Field(
        default=(),
        description='["words"]: finals carry their words (stream times, probabilities); the '
        "same as word_timestamps",
    )
    task: Literal["transcribe", "translate"] = Field(
        default="transcribe",
        description="translate: partials and finals in English, whatever is spoken "
        "(multilingual models only)",
    )
    keywords: tuple[str, ...] = Field(
        default=(),
        max_length=MAX_KEYWORDS,
        description="names and jargon to spell right (up to 100, each up to 50 characters): "
        "the model's hotwords, kept apart from the carried prompt",
    )
    partials: bool = True
    partial_backend: Literal["auto", "remote", "local"] = Field(
        default="auto",
        description="with the remote backend: partials from the remote or the local model",
    )
    partial_interval_ms: int = Field(default=500, ge=100, le=10_000)
    prompt_reset_silence_ms: int = Field(default=30_000, ge=0)

    @field_validator("language", mode="before")
    @classmethod
    def _auto_means_detect(cls, value: Any) -> Any:
        if value in ("", "auto"):
            return None
        if isinstance(value, str):
            value = value.lower()
            if not value.isalpha() or not 2 <= len(value) <= 3:
                raise ValueError("language must be an ISO-639-1 code such as 'en', or 'auto'")
        return value

    @field_validator("include", "keywords", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """Lists come as JSON arrays in ``session.update`` and as "a,b" in a query string."""
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("keywords")
    @classmethod
    def _short_keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        keywords = tuple(keyword.strip() for keyword in value if keyword.strip())
        if any(len(keyword) > MAX_KEYWORD_CHARS for keyword in keywords):
            raise ValueError(f"each keyword must be at most {MAX_KEYWORD_CHARS} characters")
        return keywords

    @property
    def wants_words(self) -> bool:
        return self.word_timestamps or "words" in self.include

    @model_validator(mode="after")
    def _g711_is_8_khz(self) -> SessionOptions:
        if self.encoding != "pcm16" and self.sample_rate != 8000:
            raise ValueError(f"{self.encoding} audio is 8 kHz: set sample_rate 8000")
        return self

    def audio_seconds(self, byte_count: int) -> float:
        """How much audio ``byte_count`` bytes in this session's encoding and rate hold."""
        bytes_per_sample = 2 if self.encoding == "pcm16" else 1
        return byte_count / bytes_per_sample / self.sample_rate

    def segmenter_options(self) -> SegmenterOptions:
        return SegmenterOptions(
            prefix_padding_ms=self.prefix_padding_ms,
            silence_duration_ms=self.silence_duration_ms,
            min_speech_duration_ms=self.min_speech_duration_ms,
            max_utterance_duration_ms=self.max_utterance_duration_ms,
            end_on_silence=self.turn_detection == "vad",
        )

    def updated(self, changes: dict[str, Any]) -> SessionOptions:
        """A copy with ``changes`` applied and validated; ``InvalidMessage`` says what is wrong."""
        return parse_options({**self.model_dump(), **changes})


def parse_options(values: dict[str, Any]) -> SessionOptions:
    try:
        return SessionOptions.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'session'}: {error['msg']}"
            for error in exc.errors()
        )
        code = "unsupported_sample_rate" if _mentions(exc, "sample_rate") else "invalid_session"
        raise InvalidMessage(f"invalid session options: {problems}", code=code) from None


def _mentions(exc: ValidationError, field_name: str) -> bool:
    return any(error["loc"] and error["loc"][0] == field_name for error in exc.errors())
