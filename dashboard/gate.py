"""Who the dashboard answers and whether it offers write actions.

The rules are in `pipeline.services.access`.

This module only reads what Streamlit knows about the request and the server (the bound address, the
`Host` header, the login configuration); it renders nothing and imports no other dashboard module, so the
router, the pages and `data` (which refuses writes on its own) can all ask it.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from pipeline.config import Settings
from pipeline.services import access


@dataclass(frozen=True)
class Access:
    """What this session may do, and the facts behind it (for the notices)."""

    writes: bool
    read_only: bool  # DASHBOARD_READ_ONLY
    exposed: bool  # bound to an address other machines can reach
    bound: str | None
    login: bool  # Streamlit's OIDC login is configured
    logged_in: bool
    proxy: bool  # DASHBOARD_TRUSTED_AUTH_PROXY

    @property
    def reason(self) -> str:
        """Why writes are off, in a few words (empty when they are on)."""
        if self.writes:
            return ""
        if self.read_only:
            return "DASHBOARD_READ_ONLY"
        if self.login:
            return "not logged in"
        return "reachable from other machines without a login"


def bound_address() -> str | None:
    """Streamlit's `server.address` (what `streamlit run --server.address` or `up --host` set); None when
    unset, which means every interface."""
    return st.get_option("server.address") or None


def request_host() -> str | None:
    """The `Host` header of this session's connection; None when there is none (AppTest, no browser)."""
    try:
        headers = st.context.headers
    except Exception:  # noqa: BLE001 - no request context at all: nothing to check
        return None
    return headers.get("Host") if headers else None


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


def logged_in() -> bool:
    """Whether the user has logged in through Streamlit's login."""
    try:
        return bool(st.user.is_logged_in)
    except Exception:  # noqa: BLE001 - no login configured or no user context
        return False


def current(settings: Settings) -> Access:
    """This session's access. With a login configured, writes wait for the user to log in: configuring
    the login alone protects nothing, since the pages do not require it to be read."""
    bound = bound_address()
    login = login_configured()
    user = login and logged_in()
    proxy = settings.DASHBOARD_TRUSTED_AUTH_PROXY
    return Access(
        writes=access.writes_allowed(
            read_only=settings.DASHBOARD_READ_ONLY, bound=bound, authenticated=proxy or user
        ),
        read_only=settings.DASHBOARD_READ_ONLY,
        exposed=access.exposed(bound),
        bound=bound,
        login=login,
        logged_in=user,
        proxy=proxy,
    )
