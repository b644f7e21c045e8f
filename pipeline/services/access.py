"""Who may use the dashboard: pure decisions about the bound address, the `Host` header and write access.

The dashboard can write (rerun runs, queue backfills), so it is a door to the database and to the API
quota. Two rules keep that door shut by default:

- Bound to an address other machines can reach (anything but loopback, and Streamlit's default of all
  interfaces) it only writes when something authenticates the user: Streamlit's built-in login or an
  authenticating reverse proxy the operator vouches for (DASHBOARD_TRUSTED_AUTH_PROXY).
- It answers only to `Host` names on an allow-list (loopback names, the bound address,
  DASHBOARD_ALLOWED_HOSTS). A web page cannot choose the Host header its browser sends, so a site that
  re-points its own DNS name at 127.0.0.1 (DNS rebinding) reaches the port but is refused.

Who clicks is decided here too (`session`): a logged-in user's role (viewer, operator, admin) comes from
DASHBOARD_ADMINS / DASHBOARD_OPERATORS by e-mail or group; what each role may do is `pipeline.actors`.

No Streamlit here: the dashboard and `crypto-pipeline up` feed these functions what they read.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.actors import Role

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


# ---------------------------------------------------------------------------------------------- roles
#
# Who may click what. The action -> least role table is `pipeline.actors.ACTIONS`; here is only who has which
# role. A role comes from the settings by e-mail or group: DASHBOARD_ADMINS and DASHBOARD_OPERATORS list
# e-mails and `group:NAME` entries, matched against the logged-in user's ID token (its `email` and the
# groups claim, DASHBOARD_GROUPS_CLAIM) or against the trusted proxy's user and groups headers.

GROUP_PREFIX = "group:"
LOCAL_ROLE: Role = "admin"  # a loopback dashboard without a login: as today, every action (like the CLI)
PROXY_ROLE: Role = "admin"  # behind the trusted proxy with no role list: the proxy decides who gets in
NO_USER = "anonymous"  # the actor of a request nothing identifies (refused, or behind a silent proxy)


@dataclass(frozen=True)
class RoleLists:
    """DASHBOARD_ADMINS and DASHBOARD_OPERATORS: e-mails (any case) and `group:NAME` entries (exact)."""

    admins: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()

    @property
    def configured(self) -> bool:
        """Whether any role list is set."""
        return bool(self.admins or self.operators)


@dataclass(frozen=True)
class Identity:
    """A user as the login or the proxy tells it: the name shown and audited, the e-mail roles are
    matched by (None when missing or unverified), and the groups."""

    name: str
    email: str | None = None
    groups: tuple[str, ...] = ()


def _listed_user(entry: str, identity: Identity) -> bool:
    entry = entry.strip()
    if entry.lower().startswith(GROUP_PREFIX):
        group = entry[len(GROUP_PREFIX) :].strip()
        return bool(group) and group in identity.groups
    return identity.email is not None and bool(entry) and entry.lower() == identity.email.lower()


def on_list(entries: Iterable[str], identity: Identity) -> bool:
    """Whether a user is on a role list: by e-mail (case does not matter) or by one of their groups (exact
    names: `group:ops` does not match a group `Ops`)."""
    return any(_listed_user(entry, identity) for entry in entries)


def role_for(identity: Identity, lists: RoleLists, *, unmatched: Role = "viewer") -> Role:
    """The role of a user: admin if on DASHBOARD_ADMINS, operator if on DASHBOARD_OPERATORS, else
    `unmatched` (a viewer, for a login)."""
    if on_list(lists.admins, identity):
        return "admin"
    if on_list(lists.operators, identity):
        return "operator"
    return unmatched


def split_groups(value: Any) -> tuple[str, ...]:
    """Group names from a claim or a header: a JSON list of names, or one string of comma-separated names
    (what proxies send, and some providers for a single group). Anything else names no group."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple):
        return tuple(str(item).strip() for item in value if isinstance(item, str | int) and str(item).strip())
    return ()


def login_identity(claims: Mapping[str, Any], groups_claim: str = "groups") -> Identity:
    """A logged-in user from the claims of their ID token (what `st.user` holds).

    The e-mail only counts for roles when the provider does not say it is unverified
    (`email_verified: false`): with some providers anyone can type any address into a profile.
    """
    email = claims.get("email")
    email = email.strip() if isinstance(email, str) and email.strip() else None
    # Some providers send the flag as text ("false"): anything but true or absent is unverified.
    flag = claims.get("email_verified")
    verified = flag is None or flag is True or str(flag).strip().lower() == "true"
    # The name the audit log records: an unverified e-mail is not taken as who the user is (anyone could
    # have typed it), so the provider's own user name or subject is used, and the address marked.
    keys = ("email", "preferred_username", "name", "sub") if verified else ("preferred_username", "sub")
    name = next(
        (
            str(claims[key]).strip()
            for key in keys
            if isinstance(claims.get(key), str) and str(claims[key]).strip()
        ),
        NO_USER,
    )
    if not verified and email:
        name = f"{name} (unverified {email})" if name != NO_USER else f"unverified {email}"
    return Identity(
        name=name, email=email if verified else None, groups=split_groups(claims.get(groups_claim))
    )


def proxy_identity(headers: Mapping[str, str], user_header: str, groups_header: str) -> Identity | None:
    """The trusted proxy's user from its request headers (looked up without regard to case); None when the
    proxy sent no user. The value is an e-mail or a user name: both are matched against the lists."""
    lowered = {key.lower(): value for key, value in headers.items()}
    user = (lowered.get(user_header.lower()) or "").strip()
    if not user:
        return None
    return Identity(name=user, email=user, groups=split_groups(lowered.get(groups_header.lower())))


@dataclass(frozen=True)
class Session:
    """Who a dashboard session is and what role it has; `role` None means it may not write at all, and
    `reason` then says why in a few words."""

    user: str | None  # None: nobody identified (a loopback dashboard without a login, or refused)
    role: Role | None
    reason: str = ""


def session(
    *,
    read_only: bool,
    bound: str | None,
    login: bool,
    claims: Mapping[str, Any] | None,
    proxy: bool,
    proxy_user: Identity | None,
    lists: RoleLists,
    groups_claim: str = "groups",
) -> Session:
    """Decide a session's user and role.

    - A configured login decides alone: a logged-in user's role comes from the lists (a viewer when on
      neither); before logging in the session may not write, on loopback too (else a viewer could log out
      to write).
    - Behind the trusted proxy: the proxy's user, matched against the lists; with no list set every user
      the proxy lets through is an admin, as before roles existed (the proxy decides who gets in).
    - Neither: on loopback the local user may do everything (as the CLI may); bound to an address other
      machines reach, nothing.

    DASHBOARD_READ_ONLY keeps the user and role (shown in the sidebar) but `reason` then refuses writes.
    """
    result: Session
    if login:
        if claims is None:
            result = Session(None, None, "not logged in")
        else:
            user = login_identity(claims, groups_claim)
            result = Session(user.name, role_for(user, lists))
    elif proxy:
        unmatched = "viewer" if lists.configured else PROXY_ROLE
        if proxy_user is None:
            result = Session(None, unmatched)
        else:
            result = Session(proxy_user.name, role_for(proxy_user, lists, unmatched=unmatched))
    elif exposed(bound):
        result = Session(None, None, "reachable from other machines without a login")
    else:
        result = Session(None, LOCAL_ROLE)
    if read_only:
        return Session(result.user, result.role, "DASHBOARD_READ_ONLY")
    return result
