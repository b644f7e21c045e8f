"""Who the dashboard answers, who the session's user is, and which write actions it may do.

The rules are in `pipeline.services.access` (who has which role) and `pipeline.actors` (which role each
action needs).

This module only reads what Streamlit knows about the request and the server (the bound address, the
`Host` header and the proxy's headers, the login configuration and `st.user`); it renders nothing and
imports no other dashboard module, so the router, the pages and `data` (which refuses writes on its own)
can all ask it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

from pipeline import actors
from pipeline.actors import Actor, Role
from pipeline.config import Settings
from pipeline.services import access


@dataclass(frozen=True)
class Access:
    """What this session may do, and the facts behind it (for the notices)."""

    writes: bool  # some write action is allowed (the role is operator or admin, and nothing refuses)
    read_only: bool  # DASHBOARD_READ_ONLY
    exposed: bool  # bound to an address other machines can reach
    bound: str | None
    login: bool  # Streamlit's OIDC login is configured
    logged_in: bool
    proxy: bool  # DASHBOARD_TRUSTED_AUTH_PROXY
    user: str | None = None  # the login's e-mail (or name), the proxy's user; None when nobody is named
    role: Role | None = None  # None: this session may not write at all (`refused` says why)
    refused: str = ""  # why no action at all is allowed, in a few words ("" when the role decides)

    @property
    def reason(self) -> str:
        """Why writes are off, in a few words (empty when some write is allowed)."""
        if self.writes:
            return ""
        if self.refused:
            return self.refused
        return f"{self.user or access.NO_USER} is {_a(self.role or 'viewer')}"

    def allows(self, action: str) -> bool:
        """Whether this session may do a write action (a name of `pipeline.actors.ACTIONS`)."""
        return not self.refused and actors.allows(self.role, action)

    def actor(self) -> Actor:
        """Who writes from this session, for the audit log: the logged-in user or the proxy's, else the OS
        user running a loopback dashboard (the one who can reach it, as the CLI records), else anonymous."""
        if self.user:
            name = self.user
        elif self.role is not None and not self.proxy:
            name = actors.os_user()
        else:
            name = access.NO_USER
        return Actor(name=name, via="dashboard", role=self.role)

    def refusal(
        self, action: str, what: str, *, off: str | None = None, name: Callable[[str], str] = str
    ) -> str:
        """The notice shown instead of an action's buttons, `what` naming it in the plural ("reruns"):
        'Signed in as bob@example.com, viewer: reruns need the operator role.' when the role is short,
        else 'Read-only dashboard: reruns are disabled (<reason>).' (`off` replaces "reruns are disabled").
        `name` renders the user's name (pages pass `components.literal`: it comes from outside)."""
        needed = actors.ACTIONS.get(action, "admin")
        if not self.refused and self.role is not None:
            who = f"Signed in as {name(self.user)}" if self.user else "This session"
            return f"{who}, {self.role}: {what} need the {needed} role."
        return f"Read-only dashboard: {off or what + ' are disabled'} ({self.reason})."

    def denial(self, action: str) -> str:
        """Why `data` refuses an action, for the PermissionError and the audit log's 'denied' row."""
        if self.refused:
            return f"write actions are disabled on this dashboard ({self.refused})"
        needed = actors.ACTIONS.get(action)
        if needed is None:
            return f"{action!r} is not a write action of this dashboard"
        who = self.user or access.NO_USER
        return f"{who} is {_a(self.role or 'viewer')}: {action} needs the {needed} role"


def _a(role: str) -> str:
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"


def bound_address() -> str | None:
    """Streamlit's `server.address` (what `streamlit run --server.address` or `up --host` set); None when
    unset, which means every interface."""
    return st.get_option("server.address") or None


def request_headers() -> Mapping[str, str]:
    """The headers of this session's connection; empty when there are none (AppTest, no browser)."""
    try:
        headers = st.context.headers
    except Exception:  # noqa: BLE001 - no request context at all: nothing to read
        return {}
    return headers or {}


def request_host() -> str | None:
    """The `Host` header of this session's connection; None when there is none (AppTest, no browser)."""
    return request_headers().get("Host")


def host_allowed(settings: Settings) -> bool:
    """Whether this session's Host header is on the allow-list (`pipeline.services.access.host_allowed`)."""
    return access.host_allowed(
        request_host(), bound=bound_address(), allowed=settings.DASHBOARD_ALLOWED_HOSTS
    )


def login_configured() -> bool:
    """Whether `[auth]` in the secrets configures Streamlit's login. Reading st.secrets without a secrets
    file raises (and may print an error on the page), so it is loaded quietly first."""
    try:
        if not st.secrets.load_if_toml_exists():
            return False
        return access.auth_configured(st.secrets)
    except Exception:  # noqa: BLE001 - an unreadable secrets file configures nothing
        return False


def user_claims() -> dict[str, Any] | None:
    """The logged-in user's ID-token claims (what Streamlit's login copied into `st.user`); None when
    nobody is logged in."""
    try:
        if not st.user.is_logged_in:
            return None
        return dict(st.user.to_dict())
    except Exception:  # noqa: BLE001 - no login configured or no user context
        return None


def logged_in() -> bool:
    """Whether the user has logged in through Streamlit's login."""
    return user_claims() is not None


def current(settings: Settings) -> Access:
    """This session's access (`pipeline.services.access.session` decides). With a login configured, writes
    wait for the user to log in, and the role then comes from DASHBOARD_ADMINS / DASHBOARD_OPERATORS."""
    bound = bound_address()
    login = login_configured()
    claims = user_claims() if login else None
    proxy = settings.DASHBOARD_TRUSTED_AUTH_PROXY
    proxy_user = (
        access.proxy_identity(
            request_headers(), settings.DASHBOARD_PROXY_USER_HEADER, settings.DASHBOARD_PROXY_GROUPS_HEADER
        )
        if proxy
        else None
    )
    decided = access.session(
        read_only=settings.DASHBOARD_READ_ONLY,
        bound=bound,
        login=login,
        claims=claims,
        proxy=proxy,
        proxy_user=proxy_user,
        lists=access.RoleLists(tuple(settings.DASHBOARD_ADMINS), tuple(settings.DASHBOARD_OPERATORS)),
        groups_claim=settings.DASHBOARD_GROUPS_CLAIM,
    )
    return Access(
        writes=not decided.reason and decided.role in ("operator", "admin"),
        read_only=settings.DASHBOARD_READ_ONLY,
        exposed=access.exposed(bound),
        bound=bound,
        login=login,
        logged_in=claims is not None,
        proxy=proxy,
        user=decided.user,
        role=decided.role,
        refused=decided.reason,
    )
