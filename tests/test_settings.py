"""Tests for pipeline.config: defaults, environment, .env file, list parsing, secrets, errors."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from pipeline.config import (
    COINGECKO_PRO_URL,
    COINGECKO_PUBLIC_URL,
    DEFAULT_DATABASE_URL,
    Settings,
    get_settings,
    load_settings,
)
from pipeline.errors import ConfigError, PipelineError

BLOCKCHAIR_KEY = "bc-secret-key-7f3a9"
COINGECKO_KEY = "CG-secret-key-51d0e"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No setting from the machine running the tests, and no `.env` except the one a test writes."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def write_env_file(tmp_path, **values: str) -> None:
    lines = [f"{name}={value}" for name, value in values.items()]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_defaults_without_environment_or_env_file():
    settings = load_settings()
    assert settings.DATABASE_URL == DEFAULT_DATABASE_URL == "sqlite:///./data/crypto.db"
    assert settings.BLOCKCHAIR_BASE_URL == "https://api.blockchair.com"
    assert settings.COINGECKO_API_PLAN == "public"
    assert settings.coingecko_url == COINGECKO_PUBLIC_URL == "https://api.coingecko.com/api/v3"
    assert settings.coingecko_history_days == 365
    assert settings.BLOCKCHAIR_API_KEY is None
    assert settings.COINGECKO_API_KEY is None
    assert settings.COINS == ["bitcoin", "ethereum", "dogecoin"]
    assert settings.DB_BATCH_SIZE == 5000
    assert settings.SQLITE_BUSY_TIMEOUT_MS == 30_000
    assert settings.secrets() == []


@pytest.mark.parametrize(
    ("plan", "expected_url", "expected_days"),
    [
        ("public", COINGECKO_PUBLIC_URL, 365),
        ("demo", COINGECKO_PUBLIC_URL, 365),
        ("pro", COINGECKO_PRO_URL, None),
    ],
)
def test_coingecko_host_and_history_follow_the_plan(plan, expected_url, expected_days):
    key = None if plan == "public" else COINGECKO_KEY
    settings = load_settings(_env_file=None, COINGECKO_API_PLAN=plan, COINGECKO_API_KEY=key)
    assert settings.coingecko_url == expected_url
    assert settings.coingecko_history_days == expected_days


def test_pro_host_is_not_the_public_host():
    assert COINGECKO_PRO_URL == "https://pro-api.coingecko.com/api/v3"
    assert COINGECKO_PRO_URL != COINGECKO_PUBLIC_URL


def test_explicit_coingecko_url_and_history_days_win_over_the_plan():
    settings = load_settings(
        _env_file=None,
        COINGECKO_API_PLAN="pro",
        COINGECKO_API_KEY=COINGECKO_KEY,
        COINGECKO_BASE_URL="http://127.0.0.1:8099/api/v3/",
        COINGECKO_HISTORY_DAYS=90,
    )
    assert settings.coingecko_url == "http://127.0.0.1:8099/api/v3"
    assert settings.coingecko_history_days == 90


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://user@db.example:5432/crypto")
    monkeypatch.setenv("BLOCKCHAIR_BASE_URL", "http://localhost:8080/")
    monkeypatch.setenv("DB_BATCH_SIZE", "250")
    monkeypatch.setenv("SQLITE_BUSY_TIMEOUT_MS", "1234")
    monkeypatch.setenv("BLOCKCHAIR_API_KEY", BLOCKCHAIR_KEY)
    settings = load_settings()
    assert settings.DATABASE_URL == "postgresql://user@db.example:5432/crypto"
    assert settings.BLOCKCHAIR_BASE_URL == "http://localhost:8080"
    assert settings.DB_BATCH_SIZE == 250
    assert settings.SQLITE_BUSY_TIMEOUT_MS == 1234
    assert settings.BLOCKCHAIR_API_KEY.get_secret_value() == BLOCKCHAIR_KEY


def test_env_file_in_working_directory_is_read(tmp_path):
    write_env_file(
        tmp_path,
        DATABASE_URL="sqlite:///./somewhere/else.db",
        COINGECKO_API_PLAN="demo",
        COINGECKO_API_KEY=COINGECKO_KEY,
        COINS="bitcoin,litecoin",
    )
    settings = load_settings()
    assert settings.DATABASE_URL == "sqlite:///./somewhere/else.db"
    assert settings.COINGECKO_API_PLAN == "demo"
    assert settings.COINGECKO_API_KEY.get_secret_value() == COINGECKO_KEY
    assert settings.COINS == ["bitcoin", "litecoin"]
    assert settings.coingecko_url == COINGECKO_PUBLIC_URL


def test_environment_wins_over_env_file(tmp_path, monkeypatch):
    write_env_file(tmp_path, DB_BATCH_SIZE="10", LOG_LEVEL="DEBUG")
    monkeypatch.setenv("DB_BATCH_SIZE", "20")
    settings = load_settings()
    assert settings.DB_BATCH_SIZE == 20
    assert settings.LOG_LEVEL == "DEBUG"


def test_get_settings_reads_once_and_is_cached(monkeypatch):
    monkeypatch.setenv("DB_BATCH_SIZE", "77")
    first = get_settings()
    monkeypatch.setenv("DB_BATCH_SIZE", "88")
    assert get_settings() is first
    assert first.DB_BATCH_SIZE == 77
    get_settings.cache_clear()
    assert get_settings().DB_BATCH_SIZE == 88


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("bitcoin,ethereum", ["bitcoin", "ethereum"]),
        (" bitcoin , ethereum ,, dogecoin ", ["bitcoin", "ethereum", "dogecoin"]),
        ("litecoin", ["litecoin"]),
        ('["bitcoin", "ethereum"]', ["bitcoin", "ethereum"]),
        (json.dumps(["cardano"]), ["cardano"]),
    ],
)
def test_coins_from_comma_separated_string_or_json_list(monkeypatch, raw, expected):
    monkeypatch.setenv("COINS", raw)
    coins = load_settings().COINS
    assert coins == expected


def test_coins_accept_a_python_list():
    assert load_settings(_env_file=None, COINS=["bitcoin"]).COINS == ["bitcoin"]


def test_api_keys_are_secret_and_never_printed(monkeypatch):
    monkeypatch.setenv("BLOCKCHAIR_API_KEY", BLOCKCHAIR_KEY)
    monkeypatch.setenv("COINGECKO_API_KEY", COINGECKO_KEY)
    monkeypatch.setenv("COINGECKO_API_PLAN", "pro")
    settings = load_settings()
    assert isinstance(settings.BLOCKCHAIR_API_KEY, SecretStr)
    assert isinstance(settings.COINGECKO_API_KEY, SecretStr)
    assert sorted(settings.secrets()) == sorted([BLOCKCHAIR_KEY, COINGECKO_KEY])
    shown = [repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())]
    for text in shown:
        assert BLOCKCHAIR_KEY not in text
        assert COINGECKO_KEY not in text
    assert "BLOCKCHAIR_API_KEY" in repr(settings)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("COINGECKO_API_PLAN", "gold"),
        ("BLOCKCHAIR_BASE_URL", "not-a-url"),
        ("BLOCKCHAIR_BASE_URL", "ftp://api.blockchair.com"),
        ("COINGECKO_BASE_URL", "api.coingecko.com/api/v3"),
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "not a url at all"),
        ("DB_BATCH_SIZE", "0"),
        ("DB_BATCH_SIZE", "lots"),
        ("SQLITE_BUSY_TIMEOUT_MS", "-1"),
    ],
)
def test_bad_value_fails_with_config_error_naming_the_setting(monkeypatch, setting, value):
    monkeypatch.setenv(setting, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert setting in str(caught.value)
    assert isinstance(caught.value, PipelineError)


def test_bad_value_in_env_file_fails_with_config_error(tmp_path):
    write_env_file(tmp_path, DATABASE_URL="mysql://x")
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings()


@pytest.mark.parametrize("plan", ["pro", "demo"])
def test_paid_or_demo_plan_without_key_fails_naming_plan_and_key(monkeypatch, plan):
    monkeypatch.setenv("COINGECKO_API_PLAN", plan)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "COINGECKO_API_PLAN" in message
    assert "COINGECKO_API_KEY" in message


def test_config_error_does_not_leak_a_key_given_with_a_bad_setting(monkeypatch):
    monkeypatch.setenv("COINGECKO_API_KEY", COINGECKO_KEY)
    monkeypatch.setenv("COINGECKO_API_PLAN", "gold")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert COINGECKO_KEY not in str(caught.value)
