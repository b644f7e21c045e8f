"""Who does a write action, and which role each action needs (pure: no Streamlit, no database).

Every write (rerun, backfill, fill gaps, acknowledge, silence, a coin change, ...) is done by an `Actor`:
a logged-in dashboard user, the OS user running a CLI command, an API key, or the scheduler itself. The
audit log (`pipeline.store.audit`) records the actor with the action; the dashboard and the API check
`allows(role, action)` on the server side before they write, whatever their pages showed.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "operator", "admin"]
Via = Literal["dashboard", "cli", "api", "scheduler"]

ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")  # each may do what the ones before it may

# The least role each write action needs. Viewers only read.
ACTIONS: dict[str, Role] = {
    "rerun": "operator",
    "run_here": "operator",
    "backfill": "operator",
    "fill_gaps": "operator",
    "acknowledge": "operator",
    "silence": "operator",
    "unsilence": "operator",
    "simulator_fault": "operator",
    "coin_add": "admin",
    "coin_enable": "admin",
    "coin_disable": "admin",
}


# The least role each restricted view needs (everything else is open to every reader): the effective
# settings (the Database page) and the whole audit log (the Runs page), which names people.
VIEWS: dict[str, Role] = {"settings": "admin", "audit_log": "operator"}


def may_view(role: Role | None, view: str) -> bool:
    """Whether `role` may see a restricted view; no role and unknown views are refused."""
    needed = VIEWS.get(view)
    return role is not None and needed is not None and ROLES.index(role) >= ROLES.index(needed)


def allows(role: Role | None, action: str) -> bool:
    """Whether `role` may do `action`; no role (not logged in) and unknown actions are refused."""
    needed = ACTIONS.get(action)
    if role is None or needed is None:
        return False
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class Actor:
    """Who did a write: a name (an e-mail, an OS user, an API key's name), through what, in which role.

    `role` is None where roles do not apply (the CLI and the scheduler run with the database's own rights).
    """

    name: str
    via: Via
    role: Role | None = None

    def __str__(self) -> str:
        role = f", {self.role}" if self.role else ""
        return f"{self.name} ({self.via}{role})"


def os_user() -> str:
    """The OS user running this process, as the CLI records it: the login name, or the uid when the
    system has none for it (a container without a passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def cli_actor() -> Actor:
    """The actor of a CLI command: the OS user."""
    return Actor(name=os_user(), via="cli")


SCHEDULER = Actor(name="scheduler", via="scheduler")
