"""Settings: one flat namespace outside (flags, environment, TOML), groups inside."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from server import cli
from server.settings import GROUPS, ServerSettings
from streamscribe.cli import build_parser

TOP_LEVEL = set(cli.TOP_LEVEL)


def parse(*flags: str) -> ServerSettings:
    return cli.settings_from_args(build_parser().parse_args(["serve", *flags]))


def test_the_groups_partition_the_settings():
    seen: dict[str, str] = {}
    for group in GROUPS:
        for name in group.model_fields:
            assert name not in seen, f"{name} is in {seen.get(name)} and {group.__name__}"
            seen[name] = group.__name__
    assert set(seen) | TOP_LEVEL == set(ServerSettings.model_fields)


def test_every_setting_but_the_secrets_is_a_flag():
    help_text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    secrets = {"api_keys", "token_secret", "remote_api_key"}
    for name in set(ServerSettings.model_fields) - secrets:
        assert cli.flag_name(name) in help_text, name
    for name in secrets:
        assert cli.flag_name(name) not in help_text  # a flag would show in the process list


def test_each_part_receives_its_own_group():
    settings = parse("--max-sessions", "3", "--load-window-s", "12", "--workers", "3")
    assert settings.limits.max_sessions == 3
    assert settings.load.load_window_s == 12
    assert settings.scheduling.workers == 3
    assert "workers" not in type(settings.limits).model_fields
    with pytest.raises(ValidationError):
        type(settings.limits)(max_sessions=-1)


def test_flags_reach_settings_of_every_kind():
    settings = parse(
        "--backend",
        "fake",
        "--fake-script",
        '["one", "two"]',
        "--model-aliases",
        '{"mine": "primary"}',
        "--allowed-origins",
        "https://a.example, https://b.example",
        "--admission",
        "false",
        "--breaker-cooldown-s",
        "2.5",
    )
    assert settings.fake_script == ["one", "two"]
    assert settings.model_routes["mine"] == "primary"
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]
    assert settings.admission is False
    assert settings.remote.breaker_cooldown_s == 2.5


def test_a_flag_that_takes_json_says_so():
    with pytest.raises(ValueError, match="--fake-script takes JSON"):
        parse("--fake-script", "not json")


def test_flags_beat_the_environment_which_beats_the_file(tmp_path, monkeypatch):
    config = tmp_path / "streamscribe.toml"
    config.write_text("max_sessions = 1\nidle_timeout_s = 5\nload_recover_s = 7\n")
    monkeypatch.setenv("STREAMSCRIBE_CONFIG_FILE", str(config))
    monkeypatch.setenv("STREAMSCRIBE_IDLE_TIMEOUT_S", "9")
    monkeypatch.setenv("STREAMSCRIBE_API_KEYS", "k1,k2")
    settings = parse("--max-sessions", "4")
    assert settings.max_sessions == 4  # flag
    assert settings.idle_timeout_s == 9  # environment
    assert settings.load_recover_s == 7  # file
    assert [key.get_secret_value() for key in settings.auth.api_keys] == ["k1", "k2"]
    assert "k1" not in repr(settings)


def test_the_ray_backend_needs_the_cluster_address():
    with pytest.raises(ValidationError, match="ray_address"):
        parse("--backend", "ray")
    settings = parse("--backend", "ray", "--ray-address", "127.0.0.1:6379", "--model", "tiny.en")
    assert settings.ray.ray_address == "127.0.0.1:6379"
    assert not settings.has_local_model
