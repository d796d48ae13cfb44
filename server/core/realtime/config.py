"""OpenAI's Realtime transcription-session configuration, kept as ``RealtimeConfig`` and mapped
onto our session options. Pure: dicts in, dicts out.

    OpenAI GA (``session``)             OpenAI beta (``session``)        ours
    ----------------------------------  -------------------------------  ------------------------
    audio.input.format                  input_audio_format               sample_rate, encoding
      {type: audio/pcm, rate: 24000}      pcm16                            pcm16 at the rate
      {type: audio/pcmu} / audio/pcma     g711_ulaw / g711_alaw            g711_ulaw / g711_alaw
                                                                         at 8 kHz
    audio.input.transcription           input_audio_transcription
      .model                              .model                         checked against the
                                                                         served names, echoed
      .language / .languages              .language                      language (several
                                                                         languages: detect)
      .prompt, .keywords                  .prompt                        prompt, keywords (the
                                                                         model's hotwords)
    audio.input.turn_detection          turn_detection
      null                                null                           turn_detection manual:
                                                                         only commits end items
      server_vad: threshold,              same                           vad_threshold,
        prefix_padding_ms,                                               prefix_padding_ms,
        silence_duration_ms                                              silence_duration_ms
        idle_timeout_ms                                                  the adapter's idle timer
      semantic_vad: eagerness             same                           silence_duration_ms by
                                                                         eagerness (our VAD)
    include: [item...logprobs]          include                          word_timestamps: word
                                                                         log probabilities
    audio.input.noise_reduction         input_audio_noise_reduction      accepted, echoed, not
                                                                         acted on

An update applies only the fields it names. Fields of OpenAI's that we accept and do not act on
(``create_response``, ``interrupt_response``, ``audio.output``...) are ignored without an error:
the SDKs and frameworks treat any ``error`` as fatal.
"""

from __future__ import annotations

import dataclasses
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from server.core.errors import InvalidMessage
from server.core.g711 import G711_RATE_HZ
from server.core.options import SessionOptions, parse_options

_ID_ALPHABET = string.ascii_letters + string.digits
AudioFormat = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
PCM: Final = "audio/pcm"
PCMU: Final = "audio/pcmu"
PCMA: Final = "audio/pcma"
BETA_FORMATS: dict[str, AudioFormat] = {"pcm16": PCM, "g711_ulaw": PCMU, "g711_alaw": PCMA}
ENCODINGS: dict[AudioFormat, str] = {PCM: "pcm16", PCMU: "g711_ulaw", PCMA: "g711_alaw"}
FORMATS: dict[str, AudioFormat] = {encoding: kind for kind, encoding in ENCODINGS.items()}
OPENAI_PCM_RATE_HZ = 24000
LOGPROBS = "item.input_audio_transcription.logprobs"
TurnKind = Literal["server_vad", "semantic_vad"]
# semantic_vad's eagerness served by our VAD: how long a silence ends the turn.
EAGERNESS_SILENCE_MS = {"low": 1000, "medium": 500, "auto": 500, "high": 300}


def openai_id(prefix: str) -> str:
    """An id as OpenAI forms them: ``sess_``, ``item_``, ``event_`` and 21 characters."""
    return f"{prefix}_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(21))


@dataclass(frozen=True, slots=True)
class TurnDetection:
    kind: TurnKind | None = "server_vad"  # None: the client commits
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    idle_timeout_ms: int | None = None
    eagerness: str = "auto"


@dataclass(frozen=True, slots=True)
class RealtimeConfig:
    model: str
    audio_format: AudioFormat = PCM
    rate: int = OPENAI_PCM_RATE_HZ
    language: str | None = None
    prompt: str = ""
    keywords: tuple[str, ...] = ()
    turn: TurnDetection = field(default_factory=TurnDetection)
    noise_reduction: dict[str, Any] | None = None
    include_logprobs: bool = False

    @classmethod
    def from_options(cls, options: SessionOptions, model: str) -> RealtimeConfig:
        manual = options.turn_detection == "manual"
        return cls(
            model=model,
            audio_format=FORMATS[options.encoding],
            rate=options.sample_rate,
            language=options.language,
            prompt=options.prompt,
            turn=TurnDetection(
                kind=None if manual else "server_vad",
                threshold=options.vad_threshold,
                prefix_padding_ms=options.prefix_padding_ms,
                silence_duration_ms=options.silence_duration_ms,
            ),
            include_logprobs=options.word_timestamps,
        )

    @property
    def sample_rate(self) -> int:
        return self.rate if self.audio_format == PCM else G711_RATE_HZ

    def option_values(self) -> dict[str, Any]:
        """Our session options as this configuration asks for them."""
        turn = self.turn
        silence_ms = turn.silence_duration_ms
        if turn.kind == "semantic_vad":
            silence_ms = EAGERNESS_SILENCE_MS.get(turn.eagerness, 500)
        return {
            "sample_rate": self.sample_rate,
            "encoding": ENCODINGS[self.audio_format],
            "language": self.language,
            "prompt": self.prompt.strip(),
            "keywords": self.keywords,
            "prefix_padding_ms": turn.prefix_padding_ms,
            "silence_duration_ms": silence_ms,
            "vad_threshold": turn.threshold,
            "turn_detection": "manual" if turn.kind is None else "vad",
            "word_timestamps": self.include_logprobs,
        }


# ---------------------------------------------------------------------------- reading updates


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidMessage(f"{where} must be an object", code="invalid_type", param=where)
    return value


def _choice(value: Any, allowed: dict[str, Any] | tuple[str, ...], where: str) -> Any:
    if value not in allowed:
        names = ", ".join(repr(name) for name in allowed)
        raise InvalidMessage(
            f"Invalid value: {value!r}. Supported values are: {names}.",
            code="invalid_value",
            param=where,
        )
    return allowed[value] if isinstance(allowed, dict) else value


def apply_update(config: RealtimeConfig, session: Any) -> RealtimeConfig:
    """``config`` with the fields ``session`` names applied: the GA shape (``type`` or ``audio``)
    or the beta one. ``InvalidMessage`` (with ``param``) for what we refuse."""
    update = _object(session, "session")
    if "audio" in update or "type" in update:
        return _apply_ga(config, update)
    return _apply_beta(config, update)


def _apply_ga(config: RealtimeConfig, session: dict[str, Any]) -> RealtimeConfig:
    if session.get("type", "transcription") != "transcription":
        raise InvalidMessage(
            "only transcription sessions are served here (session.type 'transcription', "
            "connect with ?intent=transcription)",
            code="invalid_value",
            param="session.type",
        )
    audio = _object(session.get("audio") or {}, "session.audio")
    audio_input = _object(audio.get("input") or {}, "session.audio.input")
    changes: dict[str, Any] = {}
    if audio_input.get("format") is not None:
        where = "session.audio.input.format"
        audio_format = _object(audio_input["format"], where)
        changes["audio_format"] = _choice(
            audio_format.get("type", PCM), (PCM, PCMU, PCMA), f"{where}.type"
        )
        if changes["audio_format"] == PCM:
            changes["rate"] = audio_format.get("rate", OPENAI_PCM_RATE_HZ)
    config = dataclasses.replace(config, **changes)
    if audio_input.get("transcription") is not None:
        where = "session.audio.input.transcription"
        config = _transcription(config, _object(audio_input["transcription"], where), where)
    if "turn_detection" in audio_input:
        where = "session.audio.input.turn_detection"
        config = _turn_detection(config, audio_input["turn_detection"], where)
    if "noise_reduction" in audio_input:
        config = dataclasses.replace(config, noise_reduction=audio_input["noise_reduction"])
    return _include(config, session)


def _apply_beta(config: RealtimeConfig, session: dict[str, Any]) -> RealtimeConfig:
    if session.get("input_audio_format") is not None:
        audio_format = _choice(
            session["input_audio_format"], BETA_FORMATS, "session.input_audio_format"
        )
        config = dataclasses.replace(config, audio_format=audio_format, rate=OPENAI_PCM_RATE_HZ)
    transcription = session.get("input_audio_transcription")
    if transcription is not None:
        where = "session.input_audio_transcription"
        config = _transcription(config, _object(transcription, where), where)
    if "turn_detection" in session:
        config = _turn_detection(config, session["turn_detection"], "session.turn_detection")
    if "input_audio_noise_reduction" in session:
        config = dataclasses.replace(config, noise_reduction=session["input_audio_noise_reduction"])
    return _include(config, session)


def _transcription(config: RealtimeConfig, values: dict[str, Any], where: str) -> RealtimeConfig:
    changes: dict[str, Any] = {}
    if isinstance(values.get("model"), str):
        changes["model"] = values["model"]
    if "language" in values:
        changes["language"] = values["language"] or None
    languages = values.get("languages")
    if isinstance(languages, list) and languages:
        changes["language"] = languages[0] if len(languages) == 1 else None  # several: detect
    if "prompt" in values:
        changes["prompt"] = values["prompt"] or ""
    if values.get("keywords") is not None:
        keywords = values["keywords"]
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise InvalidMessage(
                "keywords must be a list of strings", code="invalid_type", param=f"{where}.keywords"
            )
        changes["keywords"] = tuple(k.strip() for k in keywords if k.strip())
    return dataclasses.replace(config, **changes)


def _turn_detection(config: RealtimeConfig, value: Any, where: str) -> RealtimeConfig:
    if value is None:
        return dataclasses.replace(config, turn=dataclasses.replace(config.turn, kind=None))
    values = _object(value, where)
    kind = _choice(values.get("type", "server_vad"), ("server_vad", "semantic_vad"), where)
    turn = dataclasses.replace(config.turn, kind=kind)
    for key in ("threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
        if values.get(key) is not None:
            turn = dataclasses.replace(turn, **{key: values[key]})
    if values.get("eagerness") is not None:
        eagerness = _choice(values["eagerness"], tuple(EAGERNESS_SILENCE_MS), f"{where}.eagerness")
        turn = dataclasses.replace(turn, eagerness=eagerness)
    idle = turn.idle_timeout_ms
    if idle is not None and (not isinstance(idle, int) or not 5000 <= idle <= 30_000):
        raise InvalidMessage(
            "idle_timeout_ms must be an integer from 5000 to 30000",
            code="invalid_value",
            param=f"{where}.idle_timeout_ms",
        )
    return dataclasses.replace(config, turn=turn)


def _include(config: RealtimeConfig, session: dict[str, Any]) -> RealtimeConfig:
    if "include" not in session:
        return config
    include = session["include"] or []
    if not isinstance(include, list):
        raise InvalidMessage("include must be a list", code="invalid_type", param="session.include")
    return dataclasses.replace(config, include_logprobs=LOGPROBS in include)


def checked_options(config: RealtimeConfig, options: SessionOptions) -> dict[str, Any]:
    """The option changes ``config`` asks of a session now set to ``options``, validated:
    ``InvalidMessage`` with our options' own message for a value they refuse."""
    changes = {
        key: value
        for key, value in config.option_values().items()
        if getattr(options, key) != value
    }
    options.updated(changes)
    return changes


def options_from_transcription_session(session: Any) -> tuple[dict[str, Any], str | None]:
    """The options a GA transcription-session config (``client_secrets``) pins: those its
    fields name, and the model it names. A token pins only what its request set."""
    if session is None:
        return {}, None
    default = RealtimeConfig(model="")
    config = apply_update(default, session)
    before, after = default.option_values(), config.option_values()
    audio_input = _object(session, "session").get("audio", {}).get("input", {}) or {}
    named = {key for key in after if before[key] != after[key]}
    if audio_input.get("format") is not None:
        named |= {"sample_rate", "encoding"}
    pinned = {key: after[key] for key in sorted(named)}
    parse_options(pinned)
    return pinned, config.model or None


# ---------------------------------------------------------------------------- views


def ga_session_view(
    session_id: str, config: RealtimeConfig, *, expires_at: int | None = None
) -> dict[str, Any]:
    """A GA ``realtime.transcription_session`` object."""
    audio_format: dict[str, Any] = {"type": config.audio_format}
    if config.audio_format == PCM:
        audio_format["rate"] = config.rate
    transcription: dict[str, Any] = {
        "model": config.model,
        "language": config.language,
        "prompt": config.prompt,
    }
    if config.keywords:
        transcription["keywords"] = list(config.keywords)
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "type": "transcription",
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": audio_format,
                "transcription": transcription,
                "turn_detection": _turn_view(config.turn),
                "noise_reduction": config.noise_reduction,
            }
        },
        "include": [LOGPROBS] if config.include_logprobs else [],
    }


def beta_session_view(session_id: str, config: RealtimeConfig) -> dict[str, Any]:
    """A beta ``realtime.transcription_session`` object."""
    beta_format = {value: key for key, value in BETA_FORMATS.items()}[config.audio_format]
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "expires_at": 0,
        "modalities": ["text"],
        "input_audio_format": beta_format,
        "input_audio_transcription": {
            "model": config.model,
            "language": config.language,
            "prompt": config.prompt,
        },
        "turn_detection": _turn_view(config.turn),
        "input_audio_noise_reduction": config.noise_reduction,
        "include": [LOGPROBS] if config.include_logprobs else None,
        "client_secret": None,
    }


def _turn_view(turn: TurnDetection) -> dict[str, Any] | None:
    if turn.kind is None:
        return None
    if turn.kind == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": turn.eagerness}
    view: dict[str, Any] = {
        "type": "server_vad",
        "threshold": turn.threshold,
        "prefix_padding_ms": turn.prefix_padding_ms,
        "silence_duration_ms": turn.silence_duration_ms,
    }
    if turn.idle_timeout_ms is not None:
        view["idle_timeout_ms"] = turn.idle_timeout_ms
    return view


def transcription_session_view(
    session_id: str, options: SessionOptions, model: str, *, expires_at: int | None = None
) -> dict[str, Any]:
    """The GA view of a session set to ``options`` (the answer of ``client_secrets``)."""
    config = RealtimeConfig.from_options(options, model)
    return ga_session_view(session_id, config, expires_at=expires_at)
