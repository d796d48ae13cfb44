"""Server configuration, built once (flags, ``STREAMSCRIBE_*`` environment variables, an optional
TOML file) by the CLI and passed down. Nothing reads it from a global."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from server.backends.models import DEFAULT_MODEL, default_cache_dir

# Names OpenAI's clients send; all served by the configured backend unless model_aliases says
# otherwise.
OPENAI_MODEL_NAMES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STREAMSCRIBE_", extra="forbid", populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    backend: Literal["local", "remote", "fake"] = "local"
    model: str = DEFAULT_MODEL
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = Field(default=0, ge=0, description="0: all cores")
    workers: int = Field(default=2, ge=1, le=64, description="concurrent model calls")
    beam_size: int = Field(default=5, ge=1, le=10, description="beam size of finals")
    partial_beam_size: int = Field(default=1, ge=1, le=10)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    default_vad: Literal["webrtc", "silero"] = "webrtc"
    max_queued_partials: int = Field(default=64, ge=1)
    max_batch_size: int = Field(
        default=0,
        ge=0,
        le=64,
        description="partials (or finals) of different sessions run as one batch, at most; "
        "0: the backend's choice (local model: 4 on a GPU, 1 on CPU)",
    )
    batch_finals: bool = Field(
        default=False,
        description="finals of different sessions may share a batch too (off: on CPU it "
        "cost final latency under load)",
    )
    batch_window_ms: float = Field(
        default=10.0, ge=0, le=1000, description="how long a batch waits for more partials"
    )
    admission: bool = Field(default=True, description="refuse sessions the server cannot serve")
    final_latency_budget_ms: float = Field(default=1500.0, gt=0)
    max_final_load: float = Field(default=0.8, gt=0, le=1)
    load_window_s: float = Field(default=30.0, gt=0)
    load_recover_s: float = Field(default=10.0, ge=0)
    max_pending_events: int = Field(
        default=1000, ge=1, description="events queued for a client that is not reading"
    )
    send_timeout_s: float = Field(default=10.0, gt=0)
    max_upload_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="largest REST upload (OpenAI: 25 MB)"
    )
    fake_script: list[str] = Field(default_factory=list)
    model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="extra or changed REST model names -> primary, local or remote",
    )

    # Who may connect. With no keys the server is open (fine on 127.0.0.1, not beyond).
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list, repr=False)
    api_key_file: Path | None = Field(default=None, description="file of hashed keys")
    token_secret: SecretStr | None = Field(
        default=None, repr=False, description="shared by servers that accept each other's tokens"
    )
    token_ttl_s: int = Field(default=600, ge=10, le=86_400)
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="browser origins allowed (empty: any)"
    )
    # Limits; 0 means unlimited.
    max_sessions: int = Field(default=0, ge=0)
    max_sessions_per_key: int = Field(default=0, ge=0)
    max_session_s: float = Field(default=0.0, ge=0)
    max_message_bytes: int = Field(default=1024 * 1024, ge=0)
    max_audio_speed: float = Field(default=0.0, ge=0, description="times real time")
    idle_timeout_s: float = Field(default=120.0, ge=0)
    ws_ping_interval_s: float = Field(default=20.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    resume_grace_s: float = Field(
        default=30.0, ge=0, description="how long a dropped session waits for a resume (0: never)"
    )
    log_format: Literal["text", "json"] = "text"
    log_transcripts: bool = Field(default=False, description="log final text (debugging only)")

    # The remote backend: any OpenAI-compatible /audio/transcriptions.
    remote_url: str | None = Field(
        default=None, description="base URL, e.g. https://api.openai.com/v1"
    )
    remote_model: str = "gpt-4o-mini-transcribe"
    remote_api_key: SecretStr | None = Field(
        default=None,
        # Read from the environment only (a flag would show in the process list).
        validation_alias=AliasChoices("STREAMSCRIBE_REMOTE_API_KEY", "OPENAI_API_KEY"),
        repr=False,
    )
    remote_timeout_s: float = Field(default=10.0, gt=0, description="one attempt")
    remote_deadline_s: float = Field(
        default=15.0, gt=0, description="a final's attempts, retries included"
    )
    remote_max_concurrent: int = Field(default=8, ge=1, le=256)
    remote_max_retries: int = Field(default=3, ge=0, le=10)
    remote_response_format: Literal["auto", "json", "verbose_json"] = "auto"
    remote_stream_partials: Literal["auto", "on", "off"] = "auto"
    remote_fallback: Literal["none", "local"] = Field(
        default="none", description="local: load --model and answer from it when the remote fails"
    )
    breaker_failures: int = Field(default=3, ge=1, description="failures that open the circuit")
    breaker_cooldown_s: float = Field(default=10.0, gt=0, description="open circuit's pause")
    log_level: str = "info"
    config_file: Path | None = Field(default=None, exclude=True)

    @field_validator("api_keys", "allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """Lists come as "a,b" from flags and the environment, as arrays from the TOML file."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _remote_needs_url(self) -> ServerSettings:
        if self.backend == "remote" and not self.remote_url:
            raise ValueError("the remote backend needs remote_url (--remote-url)")
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
        return self.backend == "local" or (
            self.backend == "remote" and self.remote_fallback == "local"
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
        import os

        path = self._init_settings().get("config_file") or os.environ.get(
            "STREAMSCRIBE_CONFIG_FILE"
        )
        if not path:
            return {}
        return TomlConfigSettingsSource(self.settings_cls, toml_file=Path(path))()
