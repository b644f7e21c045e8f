"""Tests for pipeline.config: defaults, environment, .env file, list parsing, secrets, errors."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import SecretStr

from pipeline.config import (
    COINGECKO_PRO_URL,
    COINGECKO_PUBLIC_URL,
    DEFAULT_DATABASE_URL,
    ApiKeyGrant,
    Settings,
    get_settings,
    is_in_memory,
    load_settings,
    mask_url_password,
    parse_api_keys,
    parse_database_url,
)
from pipeline.errors import (
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    PipelineError,
    UnsupportedDatabase,
)

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
    assert settings.COINS == []  # the scheduler runs every enabled coin of coin_metadata
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


def test_api_keys_may_be_named_and_unnamed_keys_are_named_by_their_digest():
    """`NAME:KEY:SCOPES` names a key for the audit log; `KEY:SCOPES` stays valid, named `key sha256:...`
    (never the key), whatever `=` it holds (an old key with `=` inside is not cut into a name and a key)."""
    value = SecretStr("grafana:k3y-one:read, ops-bot:k3y=two:read+operate,cGFkZGVk==:health, =lead:audit")
    keys = parse_api_keys(value)
    assert keys["k3y-one"] == ApiKeyGrant("grafana", frozenset({"read"}))
    assert keys["k3y=two"] == ApiKeyGrant("ops-bot", frozenset({"read", "operate"}))
    old = parse_api_keys(SecretStr("LongSecretPart0123456789=ab:read+operate"))
    assert list(old) == ["LongSecretPart0123456789=ab"]
    for unnamed in ("cGFkZGVk==", "=lead"):
        assert keys[unnamed].name == "key sha256:" + hashlib.sha256(unnamed.encode()).hexdigest()[:8]
    assert keys["=lead"].scopes == frozenset({"audit"})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bad/name:s3cr3t:read", "entry 1: a NAME is letters"),
        ("ops:s3cr3t:read, ops:0th3r:read", "entry 2 repeats an earlier name"),
        ("ops:s3cr3t:read, s3cr3t:health", "entry 2 repeats an earlier key"),
        ("s3cr3t", "entry 1 is not KEY:SCOPE"),
        ("a:b:c:read", "entry 1 is not KEY:SCOPE"),
        (":s3cr3t:read", "entry 1 has an empty NAME"),
    ],
)
def test_bad_named_api_keys_are_refused_by_position_never_by_text(value, message):
    with pytest.raises(ValueError, match="API_KEYS entry") as caught:
        parse_api_keys(SecretStr(value))
    assert message in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


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


# ---------------------------------------------------------------------------------------------- DATABASE_URL

DB_PASSWORD = "db-pa55-w0rd"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlte:///./data/crypto.db", "did you mean 'sqlite:///./data/crypto.db'?"),
        (
            f"postgresq://root:{DB_PASSWORD}@db.example/crypto",
            "did you mean 'postgresql://root:***@db.example",
        ),
        (f"postgresql://root:{DB_PASSWORD}@db.example:notaport/crypto", "port is not a number"),
        (f"postgresql://root:{DB_PASSWORD}@db.example:/crypto", "port is not a number"),
        (f"postgresql://root:{DB_PASSWORD}@db.example:99999/crypto", "port 99999 is not between 1 and 65535"),
        (f"mysql://root:{DB_PASSWORD}@db.example/crypto", "scheme 'mysql' is not supported"),
        ("postgresql+psycopg2://db.example/crypto", "driver 'postgresql+psycopg2' is not supported"),
        ("postgresql+asyncpg://db.example/crypto", "driver 'postgresql+asyncpg' is not supported"),
        ("sqlite://./data/crypto.db", "three slashes"),
        (f"postgresql//root:{DB_PASSWORD}@db.example/crypto", "not a database URL"),
        ("not a url at all", "not a database URL"),
    ],
)
def test_unusable_database_url_is_one_clear_error_without_the_password(monkeypatch, url, expected):
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(UnsupportedDatabase) as caught:
        load_settings()
    message = str(caught.value)
    assert expected in message
    assert "DATABASE_URL" in message
    assert DB_PASSWORD not in message
    assert "\n" not in message
    assert "Value error" not in message  # pydantic's prefix says nothing to an operator
    # Still a ConfigError (callers that catch configuration problems keep working), with its own exit code.
    assert isinstance(caught.value, ConfigError)
    assert isinstance(caught.value, DatabaseError)
    assert caught.value.exit_code == UnsupportedDatabase.exit_code != DatabaseUnavailable.exit_code


def test_a_bad_database_url_with_another_bad_setting_is_a_plain_config_error(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlte:///x.db")
    monkeypatch.setenv("DB_BATCH_SIZE", "0")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert not isinstance(caught.value, UnsupportedDatabase)
    assert "DATABASE_URL" in str(caught.value)
    assert "DB_BATCH_SIZE" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://root@db.example/crypto", "postgresql+psycopg"),  # Heroku, Render, many panels
        ("postgresql://root@db.example:5433/crypto", "postgresql+psycopg"),
        ("postgresql+psycopg://root@db.example/crypto", "postgresql+psycopg"),
        ("postgresql:///crypto", "postgresql+psycopg"),  # the local socket
        ("sqlite:///./data/crypto.db", "sqlite"),
        ("sqlite+pysqlite:////var/lib/crypto.db", "sqlite"),
    ],
)
def test_usable_database_urls_are_kept_as_typed_and_parse_to_our_driver(url, driver):
    kept = load_settings(_env_file=None, DATABASE_URL=url).DATABASE_URL
    assert kept == url
    assert parse_database_url(url).drivername == driver


@pytest.mark.parametrize(
    ("url", "in_memory"),
    [
        ("sqlite://", True),
        ("sqlite:///", True),
        ("sqlite:///:memory:", True),
        ("sqlite:///file:mem?mode=memory&uri=true", True),
        ("sqlite:///file::memory:?cache=shared&uri=true", True),
        ("sqlite:///./data/crypto.db", False),
        ("sqlite:///file:data.db?mode=ro&uri=true", False),
        ("postgresql://root@db.example/crypto", False),
    ],
)
def test_in_memory_sqlite_is_recognised_but_still_valid_settings(url, in_memory):
    # Settings accept it (tests build services on it); the commands and the scheduler refuse it.
    kept = load_settings(_env_file=None, DATABASE_URL=url).DATABASE_URL
    assert kept == url
    assert is_in_memory(parse_database_url(url)) is in_memory


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://root:pw@db/crypto", "postgresql://root:***@db/crypto"),
        ("postgresql://root:p@ss:w@db:5432/crypto", "postgresql://root:***@db:5432/crypto"),
        ("postgresql//root:pw@db/crypto", "postgresql//root:***@db/crypto"),
        ("got 'root:pw@db' here", "got 'root:***@db' here"),
        ("postgresql://root@db/crypto", "postgresql://root@db/crypto"),
        ("postgresql://db:5432/crypto", "postgresql://db:5432/crypto"),
        ("sqlite:////var/lib/crypto.db", "sqlite:////var/lib/crypto.db"),
        ("postgresql://u@db/c?password=pw&sslmode=require", "postgresql://u@db/c?password=***&sslmode=require"),
        ("postgresql://u@db/c?sslmode=require&PASSWORD=pw", "postgresql://u@db/c?sslmode=require&PASSWORD=***"),
    ],
)
def test_url_passwords_are_masked_even_in_text_that_does_not_parse(text, masked):
    assert mask_url_password(text) == masked
