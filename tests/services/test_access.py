"""services.access: loopback detection, the Host allow-list (DNS rebinding) and when writes are offered."""

from __future__ import annotations

import pytest

from pipeline.services import access


@pytest.mark.parametrize(
    "host",
    [
        "localhost", "LOCALHOST", "localhost.", "app.localhost", "localhost.localdomain", "ip6-localhost",
        "127.0.0.1", "127.1.2.3", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "fe80::1%lo",
    ],
)  # fmt: skip
def test_loopback_names_and_addresses(host):
    if host == "fe80::1%lo":
        assert not access.is_loopback(host)  # link-local is reachable from the local network
    else:
        assert access.is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [None, "", "0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", "localhost.example.com",
     "127.0.0.1.nip.io", "::ffff:10.0.0.1"],
)  # fmt: skip
def test_other_addresses_are_not_loopback(host):
    assert not access.is_loopback(host)
    assert access.exposed(host)


def test_wildcards_name_no_host():
    assert access.is_wildcard(None)
    assert access.is_wildcard("")
    assert access.is_wildcard("0.0.0.0")
    assert access.is_wildcard("::")
    assert not access.is_wildcard("192.168.1.5")
    assert not access.is_wildcard("dash.example")


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("example.com", "example.com"), ("Example.COM:8501", "example.com"), ("[::1]:8501", "::1"),
        ("[::1]", "::1"), ("::1", "::1"), ("127.0.0.1:80", "127.0.0.1"), ("host.:1", "host"),
    ],
)  # fmt: skip
def test_host_header_without_its_port(header, name):
    assert access.host_name(header) == name


@pytest.mark.parametrize("bound", ["127.0.0.1", "0.0.0.0", None, "192.168.1.5"])
@pytest.mark.parametrize(
    "header", ["localhost:8501", "127.0.0.1:8501", "[::1]:8501", "LocalHost", "a.localhost:1"]
)
def test_loopback_hosts_are_always_answered(header, bound):
    assert access.host_allowed(header, bound=bound)


@pytest.mark.parametrize("bound", ["127.0.0.1", "0.0.0.0", None, "192.168.1.5"])
@pytest.mark.parametrize(
    "header", ["evil.example", "evil.example:8501", "localhost.evil.example", "127.0.0.1.nip.io:8501", ""]
)
def test_foreign_hosts_are_refused(header, bound):
    """A rebinding site sends its own name (whatever address it resolves to)."""
    assert not access.host_allowed(header, bound=bound)


def test_the_bound_address_is_answered_but_a_wildcard_names_nothing():
    assert access.host_allowed("192.168.1.5:8501", bound="192.168.1.5")
    assert access.host_allowed("dash.lan", bound="DASH.lan.")
    assert not access.host_allowed("0.0.0.0:8501", bound="0.0.0.0")
    assert not access.host_allowed("192.168.1.5", bound="0.0.0.0")


def test_allowed_hosts_add_names_domains_or_everything():
    allowed = ["dash.example.com", ".corp.example"]
    assert access.host_allowed("dash.example.com:443", bound="0.0.0.0", allowed=allowed)
    assert access.host_allowed("corp.example", bound="0.0.0.0", allowed=allowed)
    assert access.host_allowed("a.b.corp.example", bound="0.0.0.0", allowed=allowed)
    assert not access.host_allowed("evilcorp.example", bound="0.0.0.0", allowed=allowed)
    assert not access.host_allowed("example.com", bound="0.0.0.0", allowed=allowed)
    assert access.host_allowed("localhost", bound="0.0.0.0", allowed=allowed)  # loopback stays
    assert access.host_allowed("anything.example", bound="0.0.0.0", allowed=["*"])


def test_a_request_without_host_header_is_not_a_browser_and_is_answered():
    assert access.host_allowed(None, bound="0.0.0.0")


@pytest.mark.parametrize(
    ("read_only", "bound", "authenticated", "writes"),
    [
        (False, "127.0.0.1", False, True),
        (False, "localhost", False, True),
        (False, "::1", False, True),
        (True, "127.0.0.1", True, False),  # read-only wins over everything
        (False, "0.0.0.0", False, False),
        (False, None, False, False),  # Streamlit's default: every interface
        (False, "192.168.1.5", False, False),
        (False, "0.0.0.0", True, True),
        (True, "0.0.0.0", True, False),
    ],
)
def test_writes_need_loopback_or_authentication(read_only, bound, authenticated, writes):
    assert access.writes_allowed(read_only=read_only, bound=bound, authenticated=authenticated) is writes


def test_auth_configured_needs_the_auth_section_streamlit_requires():
    section = {"redirect_uri": "https://d/oauth2callback", "cookie_secret": "s"}
    assert access.auth_configured({"auth": section})
    assert not access.auth_configured({})
    assert not access.auth_configured({"auth": "yes"})
    assert not access.auth_configured({"auth": {"redirect_uri": "https://d/oauth2callback"}})
    assert not access.auth_configured({"other": {"redirect_uri": "x", "cookie_secret": "s"}})


def test_auth_configured_in_secrets_files(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[auth]\nredirect_uri = "https://d/oauth2callback"\ncookie_secret = "s"\n')
    broken = tmp_path / "broken.toml"
    broken.write_text("[auth\n")
    missing = tmp_path / "missing.toml"
    assert access.auth_configured_in([missing, broken, good])
    assert not access.auth_configured_in([missing, broken])
    assert access.secrets_files(tmp_path)[-1] == tmp_path / ".streamlit" / "secrets.toml"


def test_exposure_warning_says_why_and_how():
    text = access.exposure_warning("0.0.0.0")
    assert "every interface" in text
    assert "DASHBOARD_TRUSTED_AUTH_PROXY=true" in text
    assert "[auth]" in text
    assert "DASHBOARD_ALLOWED_HOSTS" in text
    assert "192.168.1.5" in access.exposure_warning("192.168.1.5")


def test_settings_read_the_dashboard_access_options(monkeypatch):
    from pipeline.config import load_settings

    monkeypatch.setenv("DASHBOARD_ALLOWED_HOSTS", "dash.example.com, .corp.example")
    monkeypatch.setenv("DASHBOARD_TRUSTED_AUTH_PROXY", "true")
    settings = load_settings(_env_file=None)
    assert settings.DASHBOARD_ALLOWED_HOSTS == ["dash.example.com", ".corp.example"]
    assert settings.DASHBOARD_TRUSTED_AUTH_PROXY is True
    monkeypatch.delenv("DASHBOARD_ALLOWED_HOSTS")
    monkeypatch.delenv("DASHBOARD_TRUSTED_AUTH_PROXY")
    defaults = load_settings(_env_file=None)
    assert defaults.DASHBOARD_ALLOWED_HOSTS == []
    assert defaults.DASHBOARD_TRUSTED_AUTH_PROXY is False


class _StubLauncher:
    """Stands in for the processes `up` starts: the notice is what is under test."""

    def __init__(
        self,
        _settings: object,
        *,
        demo: bool,
        host: str,
        port: int | None,
        api_port: int | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.url = f"http://{host}:{port}"
        self.api_url = f"http://127.0.0.1:{api_port or 8000}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port or 9464}/metrics"
        self.stopping = False
        self.sink = None

    def start(self) -> str:
        return self.url

    def watch(self) -> int:
        return 0

    def stop(self) -> None:
        pass


@pytest.mark.parametrize(
    ("host", "env", "auth_file", "warned"),
    [
        ("0.0.0.0", {}, False, True),
        ("192.168.1.5", {}, False, True),
        ("127.0.0.1", {}, False, False),
        ("localhost", {}, False, False),
        ("0.0.0.0", {"DASHBOARD_TRUSTED_AUTH_PROXY": "true"}, False, False),
        ("0.0.0.0", {}, True, False),
    ],
)
def test_up_warns_when_the_dashboard_is_exposed_without_login(
    host, env, auth_file, warned, tmp_path, monkeypatch, capsys
):
    from pipeline.config import load_settings
    from pipeline.runtime import launcher

    monkeypatch.setattr(launcher, "Launcher", _StubLauncher)
    monkeypatch.setattr(launcher.signal, "signal", lambda *_args: None)  # keep pytest's handlers
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    if auth_file:
        (tmp_path / ".streamlit").mkdir()
        (tmp_path / ".streamlit" / "secrets.toml").write_text(
            '[auth]\nredirect_uri = "https://d/oauth2callback"\ncookie_secret = "s"\n'
        )
    settings = load_settings(_env_file=None, **env)
    assert launcher.up(settings, demo=False, host=host, port=8501) == 0
    err = capsys.readouterr().err
    assert ("Warning: The dashboard listens on" in err) is warned, err
    if warned:
        assert "write actions (rerun, run here, fill gaps) are disabled" in err
