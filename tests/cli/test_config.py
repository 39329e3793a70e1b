from __future__ import annotations

import json

from llmtui.config import parse_duration
from llmtui.errors import ExitCode
from tests.conftest import one_line_error


def test_config_roundtrip(llm, home) -> None:
    path = llm("config", "path").stdout.strip()
    assert path == str(home / "config" / "config.toml")
    assert llm("config", "set", "temperature", "0").returncode == 0
    assert llm("config", "set", "keep_alive", "10m").returncode == 0
    assert llm("config", "get", "temperature").stdout.strip() == "0.0"
    shown = json.loads(llm("config", "show", "--json").stdout)
    assert shown["temperature"] == 0.0 and shown["keep_alive"] == "10m"
    assert shown["default_model"] == "smollm2:135m"
    assert "temperature = 0.0" in (home / "config" / "config.toml").read_text()
    assert llm("config", "unset", "temperature").returncode == 0
    assert llm("config", "get", "temperature").stdout.strip() == "0.8"


def test_bad_keys_and_values(llm, home) -> None:
    res = llm("config", "set", "temprature", "1")
    assert res.returncode == ExitCode.CONFIG
    line = one_line_error(res.stderr)
    assert "temprature" in line and "config.toml" in line
    for key, value in [("temperature", "hot"), ("temperature", "nan"), ("temperature", "-1"),
                       ("max_loaded_models", "0"), ("keep_alive", "soon"),
                       ("memory_budget", "150%"), ("default_model", "../x"),
                       ("stream_interval", "fast"), ("stream_interval", "2s")]:
        res = llm("config", "set", key, value)
        assert res.returncode == ExitCode.CONFIG, (key, value, res.stderr)
        line = one_line_error(res.stderr)
        assert key in line and "config.toml" in line
    res = llm("config", "get", "nope")
    assert res.returncode == ExitCode.CONFIG


def test_broken_config_file_is_reported(llm, home) -> None:
    cfg = home / "config" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("colour = true\n")
    res = llm("list")
    assert res.returncode == ExitCode.CONFIG
    line = one_line_error(res.stderr)
    assert "colour" in line and str(cfg) in line
    cfg.write_text("temperature = [\n")
    res = llm("list")
    assert res.returncode == ExitCode.CONFIG
    assert "not valid TOML" in one_line_error(res.stderr)
    cfg.write_text('temperature = "warm"\n')
    assert "temperature" in one_line_error(llm("list").stderr)


def test_parse_duration() -> None:
    assert parse_duration("5m") == 300
    assert parse_duration("1h30m") == 5400
    assert parse_duration("300") == 300
    assert parse_duration(-1) == -1
    assert parse_duration("0") == 0
    assert parse_duration("250ms") == 0.25
