"""Server configuration, built once (flags, ``STREAMSCRIBE_*`` environment variables, an optional
TOML file) by the CLI and passed down. Nothing reads it from a global.

The settings are one flat namespace outside (``--max-sessions``, ``STREAMSCRIBE_MAX_SESSIONS``,
``max_sessions = 4`` in the file), and groups inside: each part of the server receives its own
group and nothing else.

    group                  who receives it
    ---------------------  ----------------------------------------------------------------
    HttpSettings           the web layer: address, uploads, websocket pings, shutdown
    StreamingSettings      each live session: outbox, resume grace, default VAD
    SessionLimits          the limit checks (policy/limits)
    LoadSettings           the load monitor and admission (policy/load)
    AuthSettings           keys, browser tokens, origins (policy/auth)
    SchedulerSettings      the inference queue: workers, batching
    LocalModelSettings     the faster-whisper backend
    RemoteSettings         the OpenAI-compatible remote backend, its retries and breaker
    RaySettings            the Ray Serve backend (a gateway in front of model replicas)
    RoomSettings           meeting rooms: how many, how large, how long idle
    LogSettings            the CLI's logging set-up

This module sits just above the core: every layer may import its group from here, and it
imports nothing from them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_MODEL = "base"
BACKEND_NAMES = ("local", "remote", "ray", "fake")
# Names OpenAI's clients send (pipecat's realtime STT defaults to gpt-realtime-whisper); all
# served by the configured backend unless model_aliases says otherwise.
OPENAI_MODEL_NAMES = (
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-realtime-whisper",
)


def default_cache_dir() -> Path:
    configured = os.environ.get("STREAMSCRIBE_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "streamscribe"


def _comma_separated(value: Any) -> Any:
    """Lists come as "a,b" from flags and the environment, as arrays from the TOML file."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class HttpSettings(_Group):
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="port; 0 picks a free one")
    max_upload_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="largest REST upload (OpenAI: 25 MB)"
    )
    max_audio_duration_s: float = Field(
        default=3 * 3600.0,
        gt=0,
        description="longest REST upload once decoded, in seconds (a small file can decode to "
        "hours)",
    )
    ws_ping_interval_s: float = Field(
        default=20.0, gt=0, description="seconds between websocket pings (and their timeout)"
    )
    shutdown_grace_s: float = Field(
        default=10.0, ge=0, description="seconds open sessions get to finish on SIGTERM"
    )


class StreamingSettings(_Group):
    default_vad: Literal["webrtc", "silero"] = Field(
        default="webrtc", description="VAD for sessions that do not choose: webrtc or silero"
    )
    max_pending_events: int = Field(
        default=1000, ge=1, description="events queued for a client that is not reading"
    )
    send_timeout_s: float = Field(
        default=10.0, gt=0, description="seconds a send may block before the client is dropped"
    )
    resume_grace_s: float = Field(
        default=30.0, ge=0, description="how long a dropped session waits for a resume (0: never)"
    )


class SessionLimits(_Group):
    """0 means unlimited, for every field."""

    max_sessions: int = Field(default=0, ge=0, description="open sessions at most")
    max_sessions_per_key: int = Field(default=0, ge=0, description="open sessions per API key")
    max_session_s: float = Field(default=0.0, ge=0, description="longest session in seconds")
    max_message_bytes: int = Field(
        default=1024 * 1024, ge=0, description="largest websocket message"
    )
    max_audio_speed: float = Field(
        default=0.0, ge=0, description="fastest audio a client may send, in times real time"
    )
    audio_burst_s: float = Field(
        default=10.0, ge=0, description="seconds of audio a client may send ahead of real time"
    )
    idle_timeout_s: float = Field(
        default=120.0, ge=0, description="close sessions silent this long (0: never)"
    )


class LoadSettings(_Group):
    admission: bool = Field(
        default=True, description="refuse new sessions when finals would miss their budget"
    )
    final_latency_budget_ms: float = Field(
        default=1500.0,
        gt=0,
        description="final latency p95 over which partials pause and new sessions are refused",
    )
    max_final_load: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="share of the model's time finals may take before new sessions are refused",
    )
    admission_burst: int = Field(
        default=8,
        ge=1,
        description="sessions admitted in the last load window whose finals have not yet "
        "shown their load, at most (a crowd arriving at once comes in this many at a time)",
    )
    load_window_s: float = Field(default=30.0, gt=0, description="seconds of figures judged")
    load_recover_s: float = Field(
        default=10.0, ge=0, description="seconds of calm before the load level steps down"
    )


class AuthSettings(_Group):
    # With no keys the server is open (fine on 127.0.0.1, not beyond).
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="API keys, comma-separated (environment or file only: a flag would show "
        "in the process list)",
    )
    api_key_file: Path | None = Field(
        default=None, description="file of hashed API keys (see `streamscribe hash-key`)"
    )
    token_secret: SecretStr | None = Field(
        default=None,
        repr=False,
        description="shared by servers that accept each other's tokens (environment or file)",
    )
    token_ttl_s: int = Field(
        default=600, ge=10, le=86_400, description="lifetime of a browser token in seconds"
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="browser origins allowed for the websocket and CORS, comma-separated "
        "(empty: any)",
    )

    @field_validator("api_keys", "allowed_origins", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return _comma_separated(value)


class SchedulerSettings(_Group):
    workers: int = Field(default=2, ge=1, le=64, description="model calls run at once")
    max_queued_partials: int = Field(
        default=64, ge=1, description="partials queued at most; the oldest go first"
    )
    max_batch_size: int = Field(
        default=0,
        ge=0,
        le=64,
        description="requests of different sessions run as one batch, at most (1: no "
        "batching; 0: the backend's choice, 4 on a GPU, 1 on CPU)",
    )
    batch_finals: bool = Field(
        default=False,
        description="finals of different sessions may share a batch too (off: on CPU it "
        "cost final latency under load)",
    )
    batch_window_ms: float = Field(
        default=10.0, ge=0, le=1000, description="how long a batch waits for more partials"
    )
    memory_trim_s: float = Field(
        default=30.0,
        ge=0,
        description="give memory freed by model calls back to the system (glibc malloc_trim) "
        "when idle, at most this often (0: never)",
    )


class LocalModelSettings(_Group):
    model: str = Field(
        default=DEFAULT_MODEL,
        description="tiny.en, base or small (bundled), a CTranslate2 directory, or a hub id",
    )
    device: str = Field(default="auto", description="auto, cpu or cuda")
    compute_type: str = Field(
        default="auto", description="auto, int8, int8_float16, float16, float32, ..."
    )
    cpu_threads: int = Field(
        default=0,
        ge=0,
        description="CPU threads per model call (0: the cores shared out among the workers)",
    )
    beam_size: int = Field(default=5, ge=1, le=10, description="beam size of finals")
    partial_beam_size: int = Field(default=1, ge=1, le=10, description="beam size of partials")
    partial_window_s: float = Field(
        default=10.0,
        ge=0,
        le=30,
        description="seconds the encoder hears for a partial (at least its audio and 1 s "
        "more; 0: Whisper's 30 s)",
    )
    first_words_prompt: Literal["carried", "client"] = Field(
        default="carried",
        description="the prompt of an utterance's partials before it shows text: the client's "
        "prompt and the previous finals (carried), or the client's alone (client: first words "
        "sooner on tiny.en, streaming WER worse)",
    )
    final_window_s: float = Field(
        default=10.0,
        ge=0,
        le=30,
        description="the same for a streaming final whose audio ends in a pause, without "
        "timestamps (0: Whisper's 30 s); one cut while the speaker talked, one that fails "
        "Whisper's thresholds or ends in a loop gets 30 s",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir, description="where joined model files are kept"
    )


class RemoteSettings(_Group):
    """Any OpenAI-compatible ``/audio/transcriptions``."""

    remote_url: str | None = Field(
        default=None, description="remote backend's base URL, e.g. https://api.openai.com/v1"
    )
    remote_model: str = Field(
        default="gpt-4o-mini-transcribe",
        description="remote model: gpt-4o-transcribe, gpt-4o-mini-transcribe, whisper-1, ...",
    )
    remote_api_key: SecretStr | None = Field(
        default=None,
        # Read from the environment only (a flag would show in the process list).
        validation_alias=AliasChoices("STREAMSCRIBE_REMOTE_API_KEY", "OPENAI_API_KEY"),
        repr=False,
        description="the remote's key (STREAMSCRIBE_REMOTE_API_KEY or OPENAI_API_KEY)",
    )
    remote_timeout_s: float = Field(default=10.0, gt=0, description="seconds of one attempt")
    remote_deadline_s: float = Field(
        default=15.0, gt=0, description="seconds a final's attempts may take, retries included"
    )
    remote_max_concurrent: int = Field(
        default=8, ge=1, le=256, description="remote requests at once"
    )
    remote_max_retries: int = Field(
        default=3, ge=0, le=10, description="retries of a final after the first attempt"
    )
    remote_response_format: Literal["auto", "json", "verbose_json"] = Field(
        default="auto", description="what to ask the remote for (auto: by model)"
    )
    remote_stream_partials: Literal["auto", "on", "off"] = Field(
        default="auto", description="partials as streamed deltas from the remote"
    )
    remote_fallback: Literal["none", "local"] = Field(
        default="none", description="local: load --model and answer from it when the remote fails"
    )
    breaker_failures: int = Field(default=3, ge=1, description="failures that open the circuit")
    breaker_cooldown_s: float = Field(
        default=10.0, gt=0, description="seconds an open circuit pauses the remote"
    )


class RaySettings(_Group):
    """A Ray Serve deployment of the model (``streamscribe ray deploy``) behind this gateway."""

    ray_address: str | None = Field(
        default=None, description="the Ray cluster's address (host:port of its GCS, or auto)"
    )
    ray_app: str = Field(
        default="streamscribe", description="the Serve application `streamscribe ray deploy` made"
    )
    ray_namespace: str = Field(
        default="streamscribe", description="the Ray namespace this gateway joins as a driver"
    )
    ray_timeout_s: float = Field(
        default=10.0, gt=0, description="seconds one attempt on a replica may take"
    )
    ray_deadline_s: float = Field(
        default=15.0, gt=0, description="seconds a final's attempts may take, retries included"
    )
    ray_max_concurrent: int = Field(
        default=64, ge=1, le=4096, description="requests this gateway has at the replicas at once"
    )
    ray_max_retries: int = Field(
        default=5, ge=0, le=20, description="retries of a final on another replica"
    )
    ray_fallback: Literal["none", "local"] = Field(
        default="none",
        description="local: load --model here and answer from it when no replica can",
    )


class RoomSettings(_Group):
    """0 means unlimited, for every count."""

    max_rooms_per_key: int = Field(default=20, ge=0, description="open rooms per API key")
    max_room_speakers: int = Field(default=16, ge=0, description="sessions speaking in a room")
    max_room_viewers: int = Field(default=200, ge=0, description="viewers following a room")
    room_idle_timeout_s: float = Field(
        default=3600.0, gt=0, description="a room with no speaker or viewer for this long ends"
    )


class LogSettings(_Group):
    log_format: Literal["text", "json"] = Field(
        default="text", description="text, or json (one JSON object per line)"
    )
    log_level: str = Field(default="info", description="debug, info, warning or error")


GroupT = TypeVar("GroupT", bound=BaseModel)

GROUPS: tuple[type[BaseModel], ...] = (
    HttpSettings,
    StreamingSettings,
    SessionLimits,
    LoadSettings,
    AuthSettings,
    SchedulerSettings,
    LocalModelSettings,
    RemoteSettings,
    RaySettings,
    RoomSettings,
    LogSettings,
)


class ServerSettings(
    BaseSettings,
    HttpSettings,
    StreamingSettings,
    SessionLimits,
    LoadSettings,
    AuthSettings,
    SchedulerSettings,
    LocalModelSettings,
    RemoteSettings,
    RaySettings,
    RoomSettings,
    LogSettings,
):
    model_config = SettingsConfigDict(
        env_prefix="STREAMSCRIBE_", extra="forbid", populate_by_name=True, frozen=True
    )

    backend: Literal["local", "remote", "ray", "fake"] = Field(
        default="local",
        description="speech backend: local (faster-whisper), remote (OpenAI-compatible API), "
        "ray (a Ray Serve deployment) or fake (scripted answers, no model)",
    )
    fake_script: list[str] = Field(
        default_factory=list, description="the fake backend's answers, in turn (JSON list)"
    )
    model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="extra or changed REST model names -> primary, local or remote (JSON)",
    )
    config_file: Path | None = Field(
        default=None, exclude=True, description="TOML file with any of these settings"
    )

    def group(self, group_type: type[GroupT]) -> GroupT:
        """The part of these settings that ``group_type`` declares, as its own object."""
        return group_type.model_validate(
            {name: getattr(self, name) for name in group_type.model_fields}
        )

    @property
    def http(self) -> HttpSettings:
        return self.group(HttpSettings)

    @property
    def streaming(self) -> StreamingSettings:
        return self.group(StreamingSettings)

    @property
    def limits(self) -> SessionLimits:
        return self.group(SessionLimits)

    @property
    def load(self) -> LoadSettings:
        return self.group(LoadSettings)

    @property
    def auth(self) -> AuthSettings:
        return self.group(AuthSettings)

    @property
    def scheduling(self) -> SchedulerSettings:
        return self.group(SchedulerSettings)

    @property
    def local_model(self) -> LocalModelSettings:
        return self.group(LocalModelSettings)

    @property
    def remote(self) -> RemoteSettings:
        return self.group(RemoteSettings)

    @property
    def ray(self) -> RaySettings:
        return self.group(RaySettings)

    @property
    def rooms(self) -> RoomSettings:
        return self.group(RoomSettings)

    @property
    def logging(self) -> LogSettings:
        return self.group(LogSettings)

    @model_validator(mode="after")
    def _backend_needs_address(self) -> ServerSettings:
        if self.backend == "remote" and not self.remote_url:
            raise ValueError("the remote backend needs remote_url (--remote-url)")
        if self.backend == "ray" and not self.ray_address:
            raise ValueError("the ray backend needs ray_address (--ray-address)")
        return self

    @model_validator(mode="after")
    def _aliases_name_a_backend(self) -> ServerSettings:
        available = {"primary"} | ({"local"} if self.has_local_model else set())
        if self.backend == "remote":
            available.add("remote")
        for name, route in self.model_aliases.items():
            if route not in available:
                raise ValueError(
                    f"model_aliases[{name!r}] = {route!r}: this server has "
                    f"{', '.join(sorted(available))}"
                )
        return self

    @property
    def model_routes(self) -> dict[str, str]:
        """Every model name the REST API accepts, and the backend that serves it."""
        routes = {name: "primary" for name in (*OPENAI_MODEL_NAMES, self.served_model)}
        routes.update(self.model_aliases)
        return {name: "primary" if route == "remote" else route for name, route in routes.items()}

    @property
    def served_model(self) -> str:
        """The model name sessions and REST clients see."""
        return self.remote_model if self.backend == "remote" else self.model

    @property
    def has_local_model(self) -> bool:
        return (
            self.backend == "local"
            or (self.backend == "remote" and self.remote_fallback == "local")
            or (self.backend == "ray" and self.ray_fallback == "local")
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags beat the environment, which beats the file.
        return (init_settings, env_settings, _ConfigFileSource(settings_cls, init_settings))


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by ``config_file`` (a flag) or ``STREAMSCRIBE_CONFIG_FILE``."""

    def __init__(
        self, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self._init_settings = init_settings

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self._init_settings().get("config_file") or os.environ.get(
            "STREAMSCRIBE_CONFIG_FILE"
        )
        if not path:
            return {}
        return TomlConfigSettingsSource(self.settings_cls, toml_file=Path(path))()
