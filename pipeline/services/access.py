"""Who may use the dashboard: pure decisions about the bound address, the `Host` header and write access.

The dashboard can write (rerun runs, queue backfills), so it is a door to the database and to the API
quota. Two rules keep that door shut by default:

- Bound to an address other machines can reach (anything but loopback, and Streamlit's default of all
  interfaces) it only writes when something authenticates the user: Streamlit's built-in login or an
  authenticating reverse proxy the operator vouches for (DASHBOARD_TRUSTED_AUTH_PROXY).
- It answers only to `Host` names on an allow-list (loopback names, the bound address,
  DASHBOARD_ALLOWED_HOSTS). A web page cannot choose the Host header its browser sends, so a site that
  re-points its own DNS name at 127.0.0.1 (DNS rebinding) reaches the port but is refused.

No Streamlit here: the dashboard and `crypto-pipeline up` feed these functions what they read.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def normalise(host: str) -> str:
    """A host name or address as compared: lower case, no brackets, no trailing dot."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name.rstrip(".")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(normalise(host).split("%")[0])  # drop an IPv6 zone id
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def is_loopback(host: str | None) -> bool:
    """Whether a bound address or host name stays on this machine (localhost, 127.0.0.0/8, ::1).

    None or "" is Streamlit's default `server.address`, which listens on every interface: not loopback.
    """
    if not host:
        return False
    name = normalise(host)
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):  # RFC 6761: *.localhost is loopback
        return True
    address = _address(name)
    return address is not None and address.is_loopback


def is_wildcard(host: str | None) -> bool:
    """Whether a bound address means "every interface" (unset, 0.0.0.0, ::): it names no host."""
    if not host:
        return True
    address = _address(host)
    return address is not None and address.is_unspecified


def host_name(header: str) -> str:
    """The host of a `Host` header without its port: 'a.example:8501' -> 'a.example', '[::1]:80' -> '::1'."""
    value = header.strip()
    if value.startswith("["):
        return normalise(value[: value.find("]") + 1] if "]" in value else value)
    if value.count(":") == 1:  # name:port; more than one colon is a bare IPv6 address
        value = value.split(":", 1)[0]
    return normalise(value)


def _listed(name: str, entry: str) -> bool:
    pattern = normalise(entry)
    if pattern == "*":
        return True
    if pattern.startswith("."):  # '.example.com' allows example.com and every subdomain
        return name == pattern[1:] or name.endswith(pattern)
    return name == pattern


def host_allowed(header: str | None, *, bound: str | None, allowed: Iterable[str] = ()) -> bool:
    """Whether the dashboard answers a request whose `Host` header is `header`.

    Allowed: loopback names and addresses, the bound address (unless it is a wildcard), and the
    DASHBOARD_ALLOWED_HOSTS entries ('name', '.domain' for it and its subdomains, '*' for any).
    Ports are ignored. A request without a Host header is allowed: DNS rebinding needs a browser, and a
    browser always sends one.
    """
    if header is None:
        return True
    name = host_name(header)
    if not name:
        return False
    if is_loopback(name):
        return True
    if not is_wildcard(bound) and bound is not None and name == normalise(bound):
        return True
    return any(_listed(name, entry) for entry in allowed)


def exposed(bound: str | None) -> bool:
    """Whether other machines may reach a dashboard bound to this address."""
    return not is_loopback(bound)


def writes_allowed(*, read_only: bool, bound: str | None, authenticated: bool) -> bool:
    """Whether write actions are offered: never when read-only, else on loopback or behind authentication."""
    return not read_only and (authenticated or not exposed(bound))


def auth_configured(secrets: Mapping[str, Any]) -> bool:
    """Whether Streamlit's built-in OIDC login is configured: an `[auth]` section with the two settings
    Streamlit needs whatever the provider (`redirect_uri`, `cookie_secret`)."""
    section = secrets.get("auth")
    return (
        isinstance(section, Mapping)
        and bool(section.get("redirect_uri"))
        and bool(section.get("cookie_secret"))
    )


def secrets_files(cwd: Path | None = None) -> list[Path]:
    """Where Streamlit looks for secrets by default: ~/.streamlit and ./.streamlit."""
    return [Path.home() / ".streamlit" / "secrets.toml", (cwd or Path.cwd()) / ".streamlit" / "secrets.toml"]


def auth_configured_in(paths: Iterable[Path]) -> bool:
    """Whether any of these secrets files configures the login (unreadable or invalid files do not)."""
    for path in paths:
        try:
            secrets = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        if auth_configured(secrets):
            return True
    return False


def exposure_warning(bound: str | None) -> str:
    """The plain-text explanation `crypto-pipeline up` prints and the dashboard shows (same facts)."""
    where = "every interface" if is_wildcard(bound) else str(bound)
    return (
        f"The dashboard listens on {where}, which other machines can reach, and no login protects it: "
        "its write actions (rerun, run here, fill gaps) are disabled. To enable them, put an "
        "authenticating reverse proxy in front and set DASHBOARD_TRUSTED_AUTH_PROXY=true, or configure "
        "Streamlit's login ([auth] in .streamlit/secrets.toml), or bind to 127.0.0.1. Host names other "
        "than localhost and the bound address are refused unless listed in DASHBOARD_ALLOWED_HOSTS."
    )
