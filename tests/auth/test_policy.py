"""The authorisation models on their own: how group names are read, and the owner model's rules."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from tesk.auth import AuthSettings, ElixirPolicy, Forbidden, OpenPolicy, OwnerPolicy, Principal, build_policy
from tesk.store import EVERYONE, Visibility
from tests.auth.conftest import entitlement


def user(name: str, *groups: str, **claims: object) -> Principal:
    return Principal(user_id=name, groups=frozenset(groups), claims=MappingProxyType(claims))


ELIXIR = ElixirPolicy(AuthSettings(profile="auth", issuer="https://login.example"))


@pytest.mark.parametrize(
    "group",
    [
        "GA4GH:GA4GH-CAP:EBI:SDO",  # no prefix or suffix
        entitlement("EBI", "SDO").removesuffix("#perun.elixir-czech.cz"),  # no suffix
        entitlement("EBI", "SDO").replace("elixir-europe.org", "evil.org"),  # another namespace
        entitlement("EBI", "SDO", "SUB"),  # deeper than a team: no role
        entitlement("EBI", ""),  # an empty team name
        entitlement("EBIX", "SDO"),  # an environment whose name starts like ours
        entitlement("EBI"),  # the environment alone
    ],
)
def test_groups_that_give_no_role(group: str) -> None:
    roles = ELIXIR.roles(user("u", group))
    assert (roles.super_admin, roles.teams, roles.admin_of) == (False, frozenset(), frozenset())
    with pytest.raises(Forbidden):
        ELIXIR.visibility(user("u", group))


def test_roles() -> None:
    roles = ELIXIR.roles(user("u", entitlement("EBI", "SDO", "ADMIN"), entitlement("EBI", "TEST")))
    assert roles.teams == {"SDO", "TEST"}
    assert roles.admin_of == {"SDO"}
    assert ELIXIR.visibility(
        user("u", entitlement("EBI", "SDO", "ADMIN"), entitlement("EBI", "TEST"))
    ) == Visibility(owner="u", owner_teams=frozenset({"SDO", "TEST"}), teams=frozenset({"SDO"}))
    assert ELIXIR.visibility(user("u", entitlement("EBI", "ADMIN"))) == EVERYONE


def test_configurable_group_names() -> None:
    policy = ElixirPolicy(
        AuthSettings(
            profile="auth",
            issuer="https://login.example",
            group_prefix="",
            group_suffix="",
            delimiter="/",
            parent_group="tes",
            env_subgroup="prod",
            admin_subgroup="admins",
        )
    )
    roles = policy.roles(user("u", "tes/prod/lab1", "tes/prod/lab2/admins", "tes/prod/admins"))
    assert (roles.super_admin, roles.teams, roles.admin_of) == (True, {"lab1", "lab2"}, {"lab2"})
    assert policy.full_name("lab1") == "tes/prod/lab1"


def test_forbidden_messages_name_the_group() -> None:
    with pytest.raises(Forbidden, match=r"SDO:ADMIN#perun"):
        ELIXIR.check_access(user("bob", entitlement("EBI", "SDO")), "task-1", "alice", "SDO")


def test_owner_model_without_admins() -> None:
    policy = OwnerPolicy("groups", None)
    alice = user("alice", groups=["admins"])
    assert policy.visibility(alice) == Visibility(owner="alice")
    assert policy.can_access(alice, "alice", None)
    assert not policy.can_access(alice, "bob", None)
    assert policy.needed_claims == frozenset()


@pytest.mark.parametrize("claim", [["tes-admin", "x"], "x tes-admin"])
def test_owner_model_admin_by_claim(claim: object) -> None:
    policy = OwnerPolicy("roles", "tes-admin")
    admin = user("root", roles=claim)
    assert policy.visibility(admin) == EVERYONE
    assert policy.can_access(admin, "bob", "any")
    assert policy.team_for_create(admin, {"GROUP_NAME": "SDO"}) is None
    with pytest.raises(Forbidden, match="'tes-admin' in claim 'roles'"):
        policy.check_access(user("eve", roles="tes-admins"), "task-1", "bob", None)


def test_build_policy() -> None:
    assert isinstance(build_policy(AuthSettings(profile="noauth")), OpenPolicy)
    assert isinstance(
        build_policy(AuthSettings(profile="auth", issuer="https://x", model="owner")), OwnerPolicy
    )
    assert isinstance(build_policy(AuthSettings(profile="auth", issuer="https://x")), ElixirPolicy)
