"""Who may do what: every allow/deny decision of the service, made here.

Services describe what is being touched as a small resource (a team with the caller's
membership role, a document with its owner, an application with its team…), looked up in
their own transaction, and call `require(principal, action, resource)`. A thing the caller
may not know exists is NotFound (404); a thing it sees but may not do this to is
Forbidden (403); read-only tokens never write.

Roles of tokens: `admin` may do everything; `service` reaches applications and
configurations (perhaps one application, perhaps read-only) and sees no teams; `user`
reaches itself, its own claude.md and, through memberships, its teams. The roles in a team are
tabled in docs/security-design.md, which tests/test_policy.py checks against `RULES` cell by cell.
What a caller may list and whether the shared cache may serve it is `scope`; whether a read shows
secret values and is audited, `reveal`.

A user token finds no application outside its teams (404, whether it exists or not). Moving an
application from one team to another (or to or from none) needs both that table's "move" and "give" rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from svc.errors import Forbidden, NotFound, ServiceError, Unprocessable
from svc.services.auth import Principal

TeamRole = Literal["owner", "admin", "member"]
TEAM_ROLES: tuple[TeamRole, ...] = ("owner", "admin", "member")
MANAGERS: frozenset[str] = frozenset({"owner", "admin"})


class Action(StrEnum):
    # Things only admins do.
    MANAGE_TOKENS = "tokens.manage"
    READ_AUDIT = "audit.read"
    READ_METRICS = "metrics.read"
    MANAGE_USERS = "users.manage"  # create, list, delete; change email or username
    # A user record (resource: UserResource).
    READ_USER = "user.read"
    UPDATE_USER = "user.update"
    # The caller's own user (/me; resource: SYSTEM).
    BE_A_USER = "me"
    # Teams (resource: TeamResource, or SYSTEM to create or list).
    CREATE_TEAM = "team.create"
    LIST_TEAMS = "team.list"
    READ_TEAM = "team.read"
    UPDATE_TEAM = "team.update"  # rename, describe
    DELETE_TEAM = "team.delete"
    CHANGE_MEMBERSHIP = "team.members.change"  # resource: MembershipChange
    # Documents (resource: DocumentResource).
    READ_DOCUMENT = "document.read"
    WRITE_DOCUMENT = "document.write"
    PROPOSE = "document.propose"
    DECIDE_PROPOSAL = "document.decide"  # accept or reject
    WITHDRAW_PROPOSAL = "document.withdraw"  # resource: ProposalResource
    # The catalog: an item is a document (READ_DOCUMENT / WRITE_DOCUMENT decide who sees and
    # changes it); searching needs a user behind it or an admin (resource: SYSTEM), installing
    # an item one sees is a user's own write (resource: DocumentResource).
    SEARCH_CATALOG = "catalog.search"
    INSTALL_ITEM = "catalog.install"
    RELEASE_ITEM = "catalog.release"  # pin a version: WRITE_DOCUMENT's rule, named for what it does
    # Applications and their configurations (resource: ApplicationResource).
    LIST_APPLICATIONS = "application.list"
    CREATE_APPLICATION = "application.create"
    READ_APPLICATION = "application.read"
    WRITE_APPLICATION = "application.write"
    GIVE_TO_TEAM = "application.team"  # set an application's team_id (resource: TeamResource)
    MOVE_APPLICATION = "application.move"  # change an application's team_id (resource: TeamMove)
    RESOLVE = "configuration.resolve"  # resolve and event streams
    REVEAL_SECRETS = "configuration.reveal"  # ask for secret values in clear (?reveal=true)
    # Secrets are a one-way door: anyone who writes a configuration may make a value secret, but
    # only who may see secret values may make one clear again or change the schema that checks them
    # (a schema is an oracle: `const`, `enum` or `pattern` answers a right guess differently).
    DECLASSIFY = "configuration.declassify"  # drop or move a secret path, roll back to before one
    CHANGE_SECRET_SCHEMA = "configuration.secret_schema"  # change the schema over secret values
    # Listing the repositories of the caller's own GitHub token (resource: SYSTEM): nothing of
    # this service is read, so any token may; importing them is a write of the application.
    LIST_GITHUB_REPOSITORIES = "github.repositories"


@dataclass(frozen=True)
class System:
    """Nothing in particular: the service as a whole (tokens, audit, the user list)."""


SYSTEM = System()


@dataclass(frozen=True)
class UserResource:
    user_id: str


@dataclass(frozen=True)
class TeamResource:
    """A team and the caller's role in it (None: not a member, or no user behind the token)."""

    team_id: str
    role: TeamRole | None


@dataclass(frozen=True)
class MembershipChange:
    """Adding, changing or removing one member: the roles involved (before and after)."""

    team: TeamResource
    roles: frozenset[str]


@dataclass(frozen=True)
class ApplicationResource:
    """An application (None: one being created, or one that does not exist) and the team it
    belongs to (or is being given to), if any, with the caller's role in that team."""

    application_id: str | None
    team: TeamResource | None = None


@dataclass(frozen=True)
class DocumentResource:
    """A document by its owner: a user (user_id), a team (team, with the caller's role) or an
    application (whose readers read and propose, and whose writers write and decide)."""

    user_id: str | None = None
    team: TeamResource | None = None
    application: ApplicationResource | None = None


@dataclass(frozen=True)
class ProposalResource:
    """A proposal on a document, and who made it (None: a token without a user)."""

    document: DocumentResource
    proposer_user_id: str | None


@dataclass(frozen=True)
class TeamMove:
    """An application leaving one team for another (None: no team), with the caller's role in each."""

    leaving: TeamResource | None
    joining: TeamResource | None


Resource = (
    System
    | UserResource
    | TeamResource
    | MembershipChange
    | DocumentResource
    | ProposalResource
    | ApplicationResource
    | TeamMove
)
Rule = Callable[[Principal, Resource], ServiceError | None]


def can(principal: Principal, action: Action, resource: Resource = SYSTEM) -> bool:
    """Whether `principal` may do `action` to `resource`."""
    return _denial(principal, action, resource) is None


def require(principal: Principal, action: Action, resource: Resource = SYSTEM) -> None:
    """Raise NotFound (hidden) or Forbidden (visible, not allowed) unless allowed."""
    denial = _denial(principal, action, resource)
    if denial is not None:
        raise denial


@dataclass(frozen=True)
class Scope:
    """What a caller may list, and whether its reads may be served from the shared cache.

    `everything`: every item of every list (admins). `application_id`: only this application (a
    token limited to one). `member_id`: this user's own items and those of its teams (a user token).
    `shared_cache`: whether what it may read is decided by its token alone, so that a read from the
    worker's shared cache (which holds no memberships) is judged right; a user's reach hangs on its
    teams, looked up in the read's own transaction.
    """

    everything: bool
    application_id: str | None
    member_id: str | None
    shared_cache: bool


def scope(principal: Principal) -> Scope:
    """The list filter and cache eligibility of `principal` (which lists it may ask for at all is `require`'s)."""
    return Scope(
        everything=principal.is_admin,
        application_id=principal.application_id,
        member_id=principal.user_id if principal.role == "user" else None,
        shared_cache=shared_cache(principal),
    )


def shared_cache(principal: Principal) -> bool:
    """`scope(principal).shared_cache`, without making the scope: the warm read asks it."""
    return principal.role != "user"


@dataclass(frozen=True)
class Reveal:
    """How a read shows secret values: in `clear` or masked, and whether the read is `audited`."""

    clear: bool
    audited: bool


# Made once: every read asks for one.
_CLEAR, _CLEAR_AUDITED, _MASKED = Reveal(True, False), Reveal(True, True), Reveal(False, False)


def reveal(principal: Principal, asked: bool) -> Reveal:
    """How a read (GET of a configuration, resolve) shows secret values, in a configuration the
    caller may otherwise read.

    A service token created with `reveal_secrets` always sees them in clear, unaudited: that is its
    purpose (a scoped one only reaches its own application anyway). An admin sees them when it
    asks (`?reveal=true`), and that read is audited. Anyone else who asks is refused (403); nobody
    else ever sees a secret value.
    """
    if principal.reveal_secrets:
        return _CLEAR
    if asked:
        require(principal, Action.REVEAL_SECRETS)
        return _CLEAR_AUDITED
    return _MASKED


def require_token_shape(
    role: str, *, user_id: str | None, application_id: str | None, reveal_secrets: bool
) -> None:
    """Unprocessable unless a token of `role` may carry these: a user token names its user, only a
    service token may be limited to an application or reveal secrets."""
    if reveal_secrets and role != "service":
        # Admins reveal per request with ?reveal=true, which is audited; user tokens never read configurations.
        raise Unprocessable("only service tokens can be created with reveal_secrets; an admin adds ?reveal=true")
    if role == "user" and user_id is None:
        raise Unprocessable("a user token needs user_id")
    if role != "user" and user_id is not None:
        raise Unprocessable("only user tokens carry user_id")
    if role != "service" and application_id is not None:
        raise Unprocessable("only service tokens can be limited to an application")


def _denial(principal: Principal, action: Action, resource: Resource) -> ServiceError | None:
    return RULES[action](principal, resource)


# --- the rules ------------------------------------------------------------------------


def _a_token(principal: Principal) -> str:
    """'an admin token', 'a service token': the caller's kind, for a detail a person reads."""
    return f"{'an' if principal.role[0] in 'aeiou' else 'a'} {principal.role} token"


def _roles(principal: Principal, *roles: str) -> Forbidden | None:
    if principal.role not in roles:
        return Forbidden(f"{_a_token(principal)} may not do this; it needs one of: {', '.join(roles)}")
    return None


def _writable(principal: Principal) -> Forbidden | None:
    return Forbidden("this token is read-only") if principal.read_only else None


def _admin_only(principal: Principal, resource: Resource) -> ServiceError | None:
    return None if principal.is_admin else Forbidden("this operation needs an admin token")


def _read_user(principal: Principal, resource: Resource) -> ServiceError | None:
    assert isinstance(resource, UserResource)
    denial = _roles(principal, "admin", "user")
    if denial is None and not principal.is_admin and principal.user_id != resource.user_id:
        denial = NotFound("user not found")  # another user's looks missing
    return denial


def _update_user(principal: Principal, resource: Resource) -> ServiceError | None:
    return _read_user(principal, resource) or _writable(principal)


def _be_a_user(principal: Principal, resource: Resource) -> ServiceError | None:
    if principal.user_id is None:
        return Forbidden(f"/me is for user tokens; this is {_a_token(principal)}, which belongs to no user")
    return None


def _team_callers(principal: Principal) -> Forbidden | None:
    if principal.role == "service":
        return Forbidden("service tokens see no teams; use an admin or a user token")
    return None


def _create_team(principal: Principal, resource: Resource) -> ServiceError | None:
    if principal.role == "user" or principal.is_admin:
        return _writable(principal)
    return _team_callers(principal)


def _list_teams(principal: Principal, resource: Resource) -> ServiceError | None:
    return _team_callers(principal)


def _in_team(principal: Principal, team: TeamResource, allowed: frozenset[str], what: str) -> ServiceError | None:
    """Admins pass; service tokens are refused; non-members find nothing; members need a role in `allowed`."""
    if principal.is_admin:
        return None
    denial = _team_callers(principal)
    if denial is not None:
        return denial
    if team.role is None:
        return NotFound(f"team {team.team_id} not found")
    if team.role not in allowed:
        needed = " or ".join(sorted(allowed))
        return Forbidden(f"a team {team.role} may not {what}; it needs the role {needed}")
    return None


def _team_rule(allowed: frozenset[str], what: str, *, write: bool) -> Rule:
    def rule(principal: Principal, resource: Resource) -> ServiceError | None:
        assert isinstance(resource, TeamResource)
        denial = _in_team(principal, resource, allowed, what)
        return denial or (_writable(principal) if write else None)

    return rule


def _change_membership(principal: Principal, resource: Resource) -> ServiceError | None:
    assert isinstance(resource, MembershipChange)
    if "owner" in resource.roles:
        denial = _in_team(principal, resource.team, frozenset({"owner"}), "add, remove or change owners")
    else:
        denial = _in_team(principal, resource.team, MANAGERS, "add, remove or change members")
    return denial or _writable(principal)


def _document_rule(team_roles: frozenset[str], what: str, *, write: bool) -> Rule:
    """`team_roles` may do it to a team's document; to an application's, writers of the
    application when the team needs a manager, else its readers."""
    application_rule = Action.WRITE_APPLICATION if team_roles <= MANAGERS else Action.READ_APPLICATION

    def rule(principal: Principal, resource: Resource) -> ServiceError | None:
        assert isinstance(resource, DocumentResource)
        if resource.application is not None:
            denial = RULES[application_rule](principal, resource.application)
        elif resource.team is not None:
            denial = _in_team(principal, resource.team, team_roles, what)
        else:
            assert resource.user_id is not None
            denial = _read_user(principal, UserResource(resource.user_id))
        return denial or (_writable(principal) if write else None)

    return rule


def _search_catalog(principal: Principal, resource: Resource) -> ServiceError | None:
    return _roles(principal, "admin", "user")


def _install_item(principal: Principal, resource: Resource) -> ServiceError | None:
    return (
        _be_a_user(principal, resource)
        or RULES[Action.READ_DOCUMENT](principal, resource)
        or _writable(principal)
    )


def _withdraw_proposal(principal: Principal, resource: Resource) -> ServiceError | None:
    """Its proposer (or an admin) withdraws a proposal; anyone else who sees it is refused."""
    assert isinstance(resource, ProposalResource)
    denial = RULES[Action.PROPOSE](principal, resource.document)
    if denial is None and not principal.is_admin and principal.user_id != resource.proposer_user_id:
        denial = Forbidden("only its proposer may withdraw a proposal")
    return denial


def _application_rule(*, write: bool) -> Rule:
    """Service tokens as in phase 1 (scoped ones see only their application: anything else,
    missing ones included, looks missing); user tokens reach the applications of their
    teams: members read, owners and admins write."""

    def rule(principal: Principal, resource: Resource) -> ServiceError | None:
        assert isinstance(resource, ApplicationResource)
        if principal.role == "user":
            team = resource.team
            if team is None or team.role is None:
                return NotFound("application not found")  # outside the caller's teams: hidden
            if write and team.role not in MANAGERS:
                return Forbidden(
                    f"a team {team.role} may only read the team's applications; writing needs owner or admin"
                )
            return _writable(principal) if write else None
        denial = _roles(principal, "admin", "service") or (_writable(principal) if write else None)
        if denial is None and principal.application_id not in (None, resource.application_id):
            denial = NotFound("application not found")
        return denial

    return rule


def _create_application(principal: Principal, resource: Resource) -> ServiceError | None:
    """Admins and unscoped service tokens create applications; a user token only for a team
    it owns or administers (giving it to a team is decided by GIVE_TO_TEAM as well)."""
    assert isinstance(resource, ApplicationResource)
    if principal.role == "user":
        if resource.team is None:
            return Forbidden("a user token creates applications only for a team it owns or administers")
        return _named_team(principal, resource.team, "create the team's applications") or _writable(principal)
    denial = _roles(principal, "admin", "service") or _writable(principal)
    if denial is None and principal.application_id is not None:
        denial = Forbidden("a token limited to one application cannot create applications")
    return denial


def _give_to_team(principal: Principal, resource: Resource) -> ServiceError | None:
    """An application goes to a team by an admin or an owner or admin of that team."""
    assert isinstance(resource, TeamResource)
    return _named_team(principal, resource, "give the team applications") or _writable(principal)


def _named_team(principal: Principal, team: TeamResource, what: str) -> ServiceError | None:
    """`_in_team` for its owners and admins, for a team a request names in its body: a team hidden
    from the caller is answered as one that does not exist (422), not as a missing target (404)."""
    denial = _in_team(principal, team, MANAGERS, what)
    return Unprocessable(f"team_id {team.team_id} names no team") if isinstance(denial, NotFound) else denial


def _move_application(principal: Principal, resource: Resource) -> ServiceError | None:
    """An application leaves its team by an admin or an owner of that team (an admin of the team
    could otherwise take it from the owners), and joins another as GIVE_TO_TEAM says."""
    assert isinstance(resource, TeamMove)
    if resource.leaving is not None:
        denial = _in_team(principal, resource.leaving, frozenset({"owner"}), "move the team's applications out of it")
        if denial is not None:
            return denial
    if resource.joining is not None:
        return _give_to_team(principal, resource.joining)
    return _writable(principal)


def _resolve(principal: Principal, resource: Resource) -> ServiceError | None:
    """`/resolve` and event streams: admin and service tokens (scoped ones: their application)."""
    assert isinstance(resource, ApplicationResource)
    denial = _roles(principal, "admin", "service")
    if denial is None and principal.application_id not in (None, resource.application_id):
        denial = NotFound("application not found")
    return denial


def _holds_the_reveal_right(what: str) -> Rule:
    """Admins, and service tokens created with `reveal_secrets` that reach the application: those
    who could read the secret values anyway."""

    def rule(principal: Principal, resource: Resource) -> ServiceError | None:
        assert isinstance(resource, ApplicationResource)
        if principal.is_admin or (
            principal.reveal_secrets and principal.application_id in (None, resource.application_id)
        ):
            return None
        return Forbidden(
            f"only an admin or a service token created with reveal_secrets may {what}; "
            f"{_a_token(principal)} without it may add secret paths, never remove them"
        )

    return rule


def _list_applications(principal: Principal, resource: Resource) -> ServiceError | None:
    """Users list the applications of their teams; the list is narrowed by the service."""
    if principal.role == "user":
        return None
    return _roles(principal, "admin", "service")


RULES: dict[Action, Rule] = {
    Action.MANAGE_TOKENS: _admin_only,
    Action.READ_AUDIT: _admin_only,
    Action.READ_METRICS: _admin_only,
    Action.MANAGE_USERS: _admin_only,
    Action.READ_USER: _read_user,
    Action.UPDATE_USER: _update_user,
    Action.BE_A_USER: _be_a_user,
    Action.CREATE_TEAM: _create_team,
    Action.LIST_TEAMS: _list_teams,
    Action.READ_TEAM: _team_rule(frozenset(TEAM_ROLES), "see the team", write=False),
    Action.UPDATE_TEAM: _team_rule(frozenset({"owner"}), "rename or describe the team", write=True),
    Action.DELETE_TEAM: _team_rule(frozenset({"owner"}), "delete the team", write=True),
    Action.CHANGE_MEMBERSHIP: _change_membership,
    Action.READ_DOCUMENT: _document_rule(frozenset(TEAM_ROLES), "read the document", write=False),
    Action.WRITE_DOCUMENT: _document_rule(MANAGERS, "write the team's document (members may propose)", write=True),
    Action.PROPOSE: _document_rule(frozenset(TEAM_ROLES), "propose changes", write=True),
    Action.DECIDE_PROPOSAL: _document_rule(MANAGERS, "accept or reject proposals", write=True),
    Action.WITHDRAW_PROPOSAL: _withdraw_proposal,
    Action.SEARCH_CATALOG: _search_catalog,
    Action.INSTALL_ITEM: _install_item,
    Action.RELEASE_ITEM: _document_rule(MANAGERS, "release the team's catalog items", write=True),
    Action.LIST_APPLICATIONS: _list_applications,
    Action.CREATE_APPLICATION: _create_application,
    Action.GIVE_TO_TEAM: _give_to_team,
    Action.MOVE_APPLICATION: _move_application,
    Action.READ_APPLICATION: _application_rule(write=False),
    Action.WRITE_APPLICATION: _application_rule(write=True),
    Action.RESOLVE: _resolve,
    Action.DECLASSIFY: _holds_the_reveal_right(
        "remove or move a secret path (or roll back to a revision without it)"
    ),
    Action.CHANGE_SECRET_SCHEMA: _holds_the_reveal_right(
        "change the schema of a configuration that has secret values (a schema can test them)"
    ),
    Action.LIST_GITHUB_REPOSITORIES: lambda principal, resource: None,
    Action.REVEAL_SECRETS: lambda principal, resource: None if principal.is_admin else Forbidden(
        "?reveal=true is for admin tokens; a service token reads secrets only if created with reveal_secrets"
    ),
}
