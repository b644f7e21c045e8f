"""services.access roles: who is admin, operator or viewer (by e-mail or group), and each session's role
with a login, behind the trusted proxy, on loopback and exposed; actors.allows is the action table."""

from __future__ import annotations

import pytest

from pipeline import actors
from pipeline.config import Settings
from pipeline.services import access
from pipeline.services.access import Identity, RoleLists

ADMINS = ("Root@Example.com", "group:platform")
LISTS = RoleLists(admins=ADMINS, operators=("ops@example.com", "group:oncall"))


def claims(email: str | None = None, **extra: object) -> dict[str, object]:
    found: dict[str, object] = {"is_logged_in": True, "sub": "u-1"}
    if email is not None:
        found["email"] = email
    return found | extra


# ---------------------------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("identity", "role"),
    [
        (Identity("root@example.com", "root@example.com"), "admin"),  # e-mails match whatever their case
        (Identity("ROOT@EXAMPLE.COM", "ROOT@EXAMPLE.COM"), "admin"),
        (Identity("ops@example.com", "ops@example.com"), "operator"),
        (Identity("dev@example.com", "dev@example.com", ("platform",)), "admin"),  # by group
        (Identity("dev@example.com", "dev@example.com", ("oncall", "readers")), "operator"),
        (Identity("ops@example.com", "ops@example.com", ("platform",)), "admin"),  # the higher role wins
        (Identity("dev@example.com", "dev@example.com", ("Platform", "on call")), "viewer"),  # groups: exact
        (Identity("anna@example.com", "anna@example.com"), "viewer"),  # on neither list
        (Identity("ops@example.com", None), "viewer"),  # a name is not an e-mail: no unverified match
    ],
)
def test_role_by_email_or_group(identity, role):
    assert access.role_for(identity, LISTS) == role


def test_entries_are_not_patterns():
    lists = RoleLists(operators=("example.com", "group:", "*", "@example.com"))
    for email in ("a@example.com", "example.com@evil.test"):
        assert access.role_for(Identity(email, email, ("",)), lists) == "viewer"


def test_settings_split_the_role_lists(monkeypatch):
    monkeypatch.setenv("DASHBOARD_ADMINS", " root@example.com , group:platform ")
    monkeypatch.setenv("DASHBOARD_OPERATORS", '["ops@example.com"]')
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.DASHBOARD_ADMINS == ["root@example.com", "group:platform"]
    assert settings.DASHBOARD_OPERATORS == ["ops@example.com"]
    assert settings.DASHBOARD_GROUPS_CLAIM == "groups"


@pytest.mark.parametrize(
    ("value", "groups"),
    [
        (["ops", "platform"], ("ops", "platform")),
        ("ops, platform", ("ops", "platform")),  # a proxy header, or a provider's single string
        ("ops", ("ops",)),
        ([" ops ", "", None, {"x": 1}], ("ops",)),
        (None, ()),
        ({"ops": True}, ()),
    ],
)
def test_groups_from_a_claim_or_a_header(value, groups):
    assert access.split_groups(value) == groups


def test_login_identity_reads_email_name_and_the_configured_groups_claim():
    user = access.login_identity(claims("ops@example.com", roles=["oncall"], groups=["x"]), "roles")
    assert user == Identity("ops@example.com", "ops@example.com", ("oncall",))
    named = access.login_identity({"is_logged_in": True, "name": "Bob", "sub": "u-2"})
    assert (named.name, named.email) == ("Bob", None)
    assert access.login_identity({"sub": "u-3"}).name == "u-3"
    assert access.login_identity({}).name == access.NO_USER


def test_an_unverified_email_gives_no_role():
    """Some providers let anyone type any address into a profile and say so with email_verified."""
    unverified = access.login_identity(claims("root@example.com", email_verified=False))
    assert access.role_for(unverified, LISTS) == "viewer"
    # Not audited under an address nobody vouched for: the provider's subject, the address marked.
    assert "unverified root@example.com" in unverified.name
    assert not unverified.name.startswith("root@example.com")
    # Some providers send the flag as text.
    for flag in ("false", "False", 0, "no"):
        as_text = access.login_identity(claims("root@example.com", email_verified=flag))
        assert access.role_for(as_text, LISTS) == "viewer", flag
    for flag in (True, "true", "TRUE"):
        verified = access.login_identity(claims("root@example.com", email_verified=flag))
        assert access.role_for(verified, LISTS) == "admin", flag
        assert verified.name == "root@example.com"
    # An unverified user who gets a role from a group is audited under the subject, not the address.
    grouped = access.login_identity({"email": "root@example.com", "email_verified": False, "sub": "mallory",
                                     "groups": ["oncall"]})  # fmt: skip
    assert grouped.name == "mallory (unverified root@example.com)"


def test_proxy_identity_reads_its_headers_whatever_their_case():
    headers = {"x-forwarded-email": " ops@example.com ", "X-FORWARDED-GROUPS": "oncall,readers"}
    user = access.proxy_identity(headers, "X-Forwarded-Email", "X-Forwarded-Groups")
    assert user == Identity("ops@example.com", "ops@example.com", ("oncall", "readers"))
    names = ("X-Forwarded-Email", "X-Forwarded-Groups")
    assert access.proxy_identity({"X-Forwarded-Email": " "}, *names) is None
    assert access.proxy_identity({"X-Forwarded-User": "ops@example.com"}, *names) is None


# ---------------------------------------------------------------------------------------------- sessions


def session(**overrides: object) -> access.Session:
    arguments: dict[str, object] = {
        "read_only": False, "bound": "127.0.0.1", "login": False, "claims": None, "proxy": False,
        "proxy_user": None, "lists": LISTS,
    }  # fmt: skip
    return access.session(**(arguments | overrides))  # type: ignore[arg-type]


def test_without_login_loopback_is_the_local_admin_and_exposed_is_refused():
    assert session() == access.Session(None, "admin")
    assert session(bound=None) == access.Session(None, None, "reachable from other machines without a login")
    assert session(bound="0.0.0.0").role is None


@pytest.mark.parametrize("bound", ["127.0.0.1", "0.0.0.0"])
def test_with_a_login_the_role_comes_from_the_lists_on_loopback_too(bound):
    assert session(bound=bound, login=True) == access.Session(None, None, "not logged in")
    ops = session(bound=bound, login=True, claims=claims("ops@example.com"))
    assert ops == access.Session("ops@example.com", "operator")
    viewer = session(bound=bound, login=True, claims=claims("anna@example.com"))
    assert viewer == access.Session("anna@example.com", "viewer")
    admin = session(bound=bound, login=True, claims=claims("dev@example.com", groups=["platform"]))
    assert admin == access.Session("dev@example.com", "admin")


def test_with_a_login_and_no_list_every_user_is_a_viewer():
    assert session(login=True, claims=claims("ops@example.com"), lists=RoleLists()).role == "viewer"


def test_behind_the_trusted_proxy():
    ops = Identity("ops@example.com", "ops@example.com")
    anna = Identity("anna@example.com", "anna@example.com")
    exposed = {"bound": "0.0.0.0", "proxy": True}
    # No list: the proxy decides who gets in, and those it lets through may do everything (as before roles).
    unlisted = session(**exposed, lists=RoleLists(), proxy_user=anna)
    assert unlisted == access.Session("anna@example.com", "admin")
    assert session(**exposed, lists=RoleLists()) == access.Session(None, "admin")
    # Lists set: the proxy's user is matched like a login; nobody named is a viewer.
    assert session(**exposed, proxy_user=ops) == access.Session("ops@example.com", "operator")
    assert session(**exposed, proxy_user=anna).role == "viewer"
    assert session(**exposed).role == "viewer"
    # A login configured as well decides (the proxy's header does not replace a logged-in user).
    both = session(**exposed, proxy_user=ops, login=True, claims=claims("anna@example.com"))
    assert both == access.Session("anna@example.com", "viewer")


def test_read_only_keeps_the_user_and_refuses():
    logged = session(read_only=True, login=True, claims=claims("root@example.com"))
    assert logged == access.Session("root@example.com", "admin", "DASHBOARD_READ_ONLY")
    assert session(read_only=True) == access.Session(None, "admin", "DASHBOARD_READ_ONLY")


# ---------------------------------------------------------------------------------------------- actions


@pytest.mark.parametrize("action", sorted(actors.ACTIONS))
def test_what_each_role_may_do(action):
    needed = actors.ACTIONS[action]
    assert not actors.allows("viewer", action)
    assert actors.allows("operator", action) is (needed == "operator")
    assert actors.allows("admin", action)
    assert not actors.allows(None, action)


def test_operator_actions_and_admin_actions():
    by_role = {role: {a for a, r in actors.ACTIONS.items() if r == role} for role in actors.ROLES}
    assert {"rerun", "run_here", "fill_gaps", "backfill", "acknowledge", "silence"} <= by_role["operator"]
    assert "simulator_fault" in by_role["operator"]
    assert by_role["admin"] == {"coin_add", "coin_enable", "coin_disable"}
    assert not by_role["viewer"]
    assert not actors.allows("admin", "drop_database")  # an unknown action is refused to everyone
