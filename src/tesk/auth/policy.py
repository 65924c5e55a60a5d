"""Authorisation: which team a new task belongs to, and which tasks a caller may see and cancel.

Three models share one protocol. `OpenPolicy` is the `noauth` profile. `ElixirPolicy` is TESK's group
model (see the README): teams are subgroups of this installation's environment group, `ADMIN`
subgroups make team admins and super admins. `OwnerPolicy` serves other providers: each user sees their
own tasks, and optionally users with an admin claim value see all. `visibility()` is what LIST hands
to the store, so the filter runs in SQL and pages stay full.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from tesk.auth.principal import Forbidden, Principal
from tesk.config.auth import AuthSettings
from tesk.auth.tokens import claim_values
from tesk.store import EVERYONE, Visibility

GROUP_NAME_TAG = "GROUP_NAME"
"""The task tag that picks the team when the creator belongs to several (the seed's name)."""


class Policy(Protocol):
    needed_claims: frozenset[str]
    """Claims the policy reads; the authenticator fetches them from userinfo when a token lacks them."""

    def team_for_create(self, principal: Principal, tags: Mapping[str, str]) -> str | None:
        """The team a new task belongs to, or `Forbidden` naming the group the caller lacks."""
        ...

    def visibility(self, principal: Principal) -> Visibility:
        """The tasks a LIST may return, or `Forbidden` when the caller may not list at all."""
        ...

    def can_access(self, principal: Principal, owner: str, team: str | None) -> bool:
        """Whether the caller may see and cancel a task created by `owner` for `team`."""
        ...

    def check_access(self, principal: Principal, task_id: str, owner: str, team: str | None) -> None:
        """`can_access`, raising `Forbidden` with what the caller would need."""
        ...


class OpenPolicy:
    """The `noauth` profile: everybody sees everything and tasks belong to no team."""

    needed_claims: frozenset[str] = frozenset()

    def team_for_create(self, principal: Principal, tags: Mapping[str, str]) -> str | None:
        return None

    def visibility(self, principal: Principal) -> Visibility:
        return EVERYONE

    def can_access(self, principal: Principal, owner: str, team: str | None) -> bool:
        return True

    def check_access(self, principal: Principal, task_id: str, owner: str, team: str | None) -> None:
        return None


class OwnerPolicy:
    """Owner only; plus, when an admin value is configured, admins by claim who see everything."""

    def __init__(self, admin_claim: str, admin_value: str | None) -> None:
        self._admin_claim = admin_claim
        self._admin_value = admin_value
        self.needed_claims = frozenset({admin_claim}) if admin_value else frozenset()

    def _is_admin(self, principal: Principal) -> bool:
        return bool(self._admin_value) and self._admin_value in claim_values(
            principal.claims.get(self._admin_claim)
        )

    def team_for_create(self, principal: Principal, tags: Mapping[str, str]) -> str | None:
        return None

    def visibility(self, principal: Principal) -> Visibility:
        return EVERYONE if self._is_admin(principal) else Visibility(owner=principal.user_id)

    def can_access(self, principal: Principal, owner: str, team: str | None) -> bool:
        return owner == principal.user_id or self._is_admin(principal)

    def check_access(self, principal: Principal, task_id: str, owner: str, team: str | None) -> None:
        if not self.can_access(principal, owner, team):
            admin = (
                f" or an admin ({self._admin_value!r} in claim {self._admin_claim!r})"
                if self._admin_value
                else ""
            )
            raise Forbidden(
                f"Task {task_id!r} belongs to another user: only its creator{admin} may see or cancel it."
            )


@dataclass(frozen=True)
class ElixirRoles:
    """A caller's roles in this installation, read from their group names."""

    super_admin: bool
    teams: frozenset[str]
    """Teams the caller is a member of (team admins are members too, as Elixir nests membership)."""
    admin_of: frozenset[str]


class ElixirPolicy:
    """TESK's Elixir group model, rule for rule (the README's table)."""

    def __init__(self, settings: AuthSettings) -> None:
        self.needed_claims = frozenset({settings.groups_claim})
        self._prefix = settings.group_prefix
        self._suffix = settings.group_suffix
        self._delimiter = settings.delimiter
        self._admin = settings.admin_subgroup
        self._environment = settings.delimiter.join((settings.parent_group, settings.env_subgroup))

    def full_name(self, *subgroups: str) -> str:
        """The group name as the provider writes it, e.g. `urn:...:GA4GH:GA4GH-CAP:EBI:SDO#perun...`."""
        return self._prefix + self._delimiter.join((self._environment, *subgroups)) + self._suffix

    def roles(self, principal: Principal) -> ElixirRoles:
        super_admin = False
        teams: set[str] = set()
        admin_of: set[str] = set()
        start = self._environment + self._delimiter
        for group in principal.groups:
            if not (group.startswith(self._prefix) and group.endswith(self._suffix)):
                continue
            name = group[len(self._prefix) : len(group) - len(self._suffix)]
            if not name.startswith(start):
                continue
            parts = name[len(start) :].split(self._delimiter)
            if parts == [self._admin]:
                super_admin = True
            elif len(parts) == 1 and parts[0]:
                teams.add(parts[0])
            elif len(parts) == 2 and parts[0] and parts[1] == self._admin:
                teams.add(parts[0])
                admin_of.add(parts[0])
        return ElixirRoles(super_admin, frozenset(teams), frozenset(admin_of))

    def _needs(self) -> str:
        return (
            f"membership of a team group ({self.full_name('<TEAM>')}) or of the admin group "
            f"{self.full_name(self._admin)}"
        )

    def team_for_create(self, principal: Principal, tags: Mapping[str, str]) -> str | None:
        roles = self.roles(principal)
        requested = tags.get(GROUP_NAME_TAG)
        if requested:
            if requested in roles.teams:
                return requested
            raise Forbidden(
                f"Tag {GROUP_NAME_TAG}={requested!r} names a team you are not a member of: creating a task for it "
                f"needs group {self.full_name(requested)}."
            )
        if roles.teams:
            return min(roles.teams)
        if roles.super_admin:
            return None
        raise Forbidden(f"Creating tasks here needs {self._needs()}.")

    def visibility(self, principal: Principal) -> Visibility:
        roles = self.roles(principal)
        if roles.super_admin:
            return EVERYONE
        if not roles.teams:
            raise Forbidden(f"Listing tasks here needs {self._needs()}.")
        return Visibility(owner=principal.user_id, owner_teams=roles.teams, teams=roles.admin_of)

    def can_access(self, principal: Principal, owner: str, team: str | None) -> bool:
        roles = self.roles(principal)
        if roles.super_admin:
            return True
        if team is None:
            return False
        return team in roles.admin_of or (team in roles.teams and owner == principal.user_id)

    def check_access(self, principal: Principal, task_id: str, owner: str, team: str | None) -> None:
        if self.can_access(principal, owner, team):
            return
        admin = self.full_name(self._admin)
        if team is None:
            raise Forbidden(
                f"Task {task_id!r} belongs to no team: only super admins (group {admin}) may access it."
            )
        if owner == principal.user_id:
            raise Forbidden(
                f"Task {task_id!r} was created for team {team!r}: you need group {self.full_name(team)} "
                "to access it again."
            )
        raise Forbidden(
            f"Task {task_id!r} belongs to another user of team {team!r}: only team admins (group "
            f"{self.full_name(team, self._admin)}) and super admins ({admin}) may access it."
        )


def build_policy(settings: AuthSettings) -> Policy:
    """The policy the settings ask for: open with `noauth`, else the configured model."""
    if settings.profile == "noauth":
        return OpenPolicy()
    if settings.model == "owner":
        return OwnerPolicy(settings.admin_claim, settings.admin_value)
    return ElixirPolicy(settings)
