"""The policy module against the documented tables of roles, decision by decision (no database:
the access matrix tests the same decisions through every route). The tables are read from the
documents (docs/security-design.md, the README's Security section): a cell that says otherwise
than the policy decides fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from svc.errors import Forbidden, NotFound, Unprocessable
from svc.services import policy
from svc.services.auth import Principal
from svc.services.policy import (
    Action,
    ApplicationResource,
    DocumentResource,
    MembershipChange,
    ProposalResource,
    TeamMove,
    TeamResource,
)

ROOT = Path(__file__).resolve().parents[1]
TEAM = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZA"
ME = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZB"
APP = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZC"
ROLES = ("owner", "admin", "member", None)
USER = Principal(token_id=None, name="someone", role="user", user_id=ME)
ADMIN = Principal(token_id=None, name="root", role="admin")
SERVICE = Principal(token_id=None, name="deployer", role="service")

Y, F, H, U = "allowed", Forbidden, NotFound, Unprocessable  # allowed, 403, 404, 422
CELLS = {"✓": Y, "403": F, "404": H, "422": U}  # a cell's first word


def team(role):
    return TeamResource(TEAM, role)


def document(role):
    return DocumentResource(team=team(role))


def application(role):
    return ApplicationResource(APP, team(role))


def members(*roles):
    return lambda role: MembershipChange(team(role), frozenset(roles))


# What each row of the documented team table means: the decisions (action, resource by the
# caller's role in the team) its cells describe.
TEAM_ROWS = {
    "see the team, its members, its document and proposals": [
        (Action.READ_TEAM, team), (Action.READ_DOCUMENT, document),
    ],
    "write the team document, accept/reject proposals": [
        (Action.WRITE_DOCUMENT, document), (Action.DECIDE_PROPOSAL, document),
    ],
    "propose a change; withdraw one's own proposal": [
        (Action.PROPOSE, document), (Action.WITHDRAW_PROPOSAL, lambda role: ProposalResource(document(role), ME)),
    ],
    "add/remove/change members and admins": [(Action.CHANGE_MEMBERSHIP, members("member", "admin"))],
    "add/remove/change owners, rename or delete the team": [
        (Action.CHANGE_MEMBERSHIP, members("owner")), (Action.CHANGE_MEMBERSHIP, members("owner", "member")),
        (Action.UPDATE_TEAM, team), (Action.DELETE_TEAM, team),
    ],
    "read the team's applications and configurations": [(Action.READ_APPLICATION, application)],
    "write the team's applications and configurations": [(Action.WRITE_APPLICATION, application)],
    "see, search, install the team's catalog items": [
        (Action.READ_DOCUMENT, document), (Action.INSTALL_ITEM, document),
    ],
    "create, change, release, delete the team's catalog items": [
        (Action.WRITE_DOCUMENT, document), (Action.RELEASE_ITEM, document),
    ],
    "move an application out of the team": [
        (Action.MOVE_APPLICATION, lambda role: TeamMove(team(role), None)),
        (Action.MOVE_APPLICATION, lambda role: TeamMove(team(role), team("owner"))),
    ],
    "give the team an application (create one for it, or move one into it)": [
        (Action.GIVE_TO_TEAM, team),
        (Action.CREATE_APPLICATION, lambda role: ApplicationResource(None, team(role))),
        (Action.MOVE_APPLICATION, lambda role: TeamMove(None, team(role))),
        (Action.MOVE_APPLICATION, lambda role: TeamMove(team("owner"), team(role))),
    ],
}


def markdown_table(text: str, header: str) -> list[list[str]]:
    """The rows (cells stripped, no header or rule) of the markdown table whose header row starts with `header`."""
    lines = [line.strip() for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def documented_team_table() -> dict[str, tuple]:
    """docs/security-design.md's table of team roles: row → expected outcome per role in `ROLES`."""
    rows = markdown_table((ROOT / "docs/security-design.md").read_text(), "| action | owner | admin | member |")
    return {row[0]: tuple(CELLS[cell.split()[0]] for cell in row[1:]) for row in rows}


TEAM_TABLE = documented_team_table()


def test_every_row_of_the_documented_team_table_is_checked():
    assert TEAM_TABLE, "the team table of docs/security-design.md was not found"
    assert set(TEAM_TABLE) == set(TEAM_ROWS)


@pytest.mark.parametrize("row", list(TEAM_ROWS))
def test_the_documented_team_table_is_what_the_policy_decides(row):
    expected = TEAM_TABLE[row]
    for action, resource in TEAM_ROWS[row]:
        decided = tuple(_outcome(USER, action, resource(role)) for role in ROLES)
        assert decided == expected, f"{row!r}: {action.value} decides {decided}"
        if action is not Action.INSTALL_ITEM:  # an admin token has no user to install for
            assert _outcome(ADMIN, action, resource(None)) == Y  # admin tokens may do everything


TEAM_ACTIONS = [
    (Action.READ_TEAM, team), (Action.UPDATE_TEAM, team), (Action.DELETE_TEAM, team),
    (Action.READ_DOCUMENT, document), (Action.WRITE_DOCUMENT, document), (Action.PROPOSE, document),
    (Action.DECIDE_PROPOSAL, document), (Action.CHANGE_MEMBERSHIP, members("member")),
]


@pytest.mark.parametrize(("action", "resource"), TEAM_ACTIONS, ids=[a.value for a, _ in TEAM_ACTIONS])
def test_service_tokens_see_no_teams(action, resource):
    assert _outcome(SERVICE, action, resource(None)) is Forbidden
    assert _outcome(ADMIN, action, resource(None)) == Y


def _outcome(principal: Principal, action: Action, resource) -> object:
    try:
        policy.require(principal, action, resource)
    except (Forbidden, NotFound, Unprocessable) as exc:
        return type(exc)
    return Y


def test_installing_a_catalog_item_is_a_users_own_write_on_what_it_sees():
    assert tuple(_outcome(USER, Action.INSTALL_ITEM, document(role)) for role in ROLES) == (Y, Y, Y, H)
    reader = Principal(token_id=None, name="reader", role="user", user_id=ME, read_only=True)
    assert _outcome(reader, Action.INSTALL_ITEM, document("member")) is Forbidden
    assert _outcome(ADMIN, Action.INSTALL_ITEM, document(None)) is Forbidden  # an admin token has no user
    assert _outcome(SERVICE, Action.SEARCH_CATALOG, None) is Forbidden


def test_read_only_tokens_never_write_and_only_proposers_withdraw():
    reader = Principal(token_id=None, name="reader", role="user", user_id=ME, read_only=True)
    assert _outcome(reader, Action.READ_DOCUMENT, document("owner")) == Y
    assert _outcome(reader, Action.WRITE_DOCUMENT, document("owner")) is Forbidden
    assert _outcome(USER, Action.WITHDRAW_PROPOSAL, ProposalResource(document("member"), ME)) == Y
    assert _outcome(USER, Action.WITHDRAW_PROPOSAL, ProposalResource(document("owner"), TEAM)) is Forbidden
    assert _outcome(ADMIN, Action.WITHDRAW_PROPOSAL, ProposalResource(document(None), TEAM)) == Y


def test_phase_one_rules_hold():
    scoped = Principal(token_id=None, name="s", role="service", application_id="01JCZ5J7Q9T1V0G6W8E2X4Y6ZD")
    assert _outcome(SERVICE, Action.READ_APPLICATION, ApplicationResource("01JCZ5J7Q9T1V0G6W8E2X4Y6ZC")) == Y
    assert _outcome(scoped, Action.READ_APPLICATION, ApplicationResource("01JCZ5J7Q9T1V0G6W8E2X4Y6ZC")) is NotFound
    assert _outcome(scoped, Action.CREATE_APPLICATION, ApplicationResource(None)) is Forbidden
    assert _outcome(USER, Action.READ_APPLICATION, ApplicationResource("01JCZ5J7Q9T1V0G6W8E2X4Y6ZC")) is NotFound
    assert _outcome(USER, Action.MANAGE_TOKENS, policy.SYSTEM) is Forbidden
    assert _outcome(SERVICE, Action.BE_A_USER, policy.SYSTEM) is Forbidden
    assert _outcome(USER, Action.READ_DOCUMENT, DocumentResource(user_id=TEAM)) is NotFound  # another user's


@pytest.mark.parametrize("action", [Action.DECLASSIFY, Action.CHANGE_SECRET_SCHEMA])
def test_only_who_may_reveal_drops_secret_paths_or_changes_the_schema_over_them(action):
    here, there = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZC", "01JCZ5J7Q9T1V0G6W8E2X4Y6ZD"
    resource = ApplicationResource(here, team("owner"))

    def service(**scope) -> Principal:
        return Principal(token_id=None, name="s", role="service", **scope)

    assert _outcome(ADMIN, action, resource) == Y
    assert _outcome(service(reveal_secrets=True), action, resource) == Y
    assert _outcome(service(reveal_secrets=True, application_id=here), action, resource) == Y
    assert _outcome(service(reveal_secrets=True, application_id=there), action, resource) is Forbidden
    assert _outcome(SERVICE, action, resource) is Forbidden
    assert _outcome(service(application_id=here), action, resource) is Forbidden
    assert _outcome(USER, action, resource) is Forbidden  # a team owner writes, but may not reveal
