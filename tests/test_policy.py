"""The policy module against the SPEC's table of team roles, decision by decision (no database:
the access matrix tests the same decisions through every route)."""

from __future__ import annotations

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

TEAM = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZA"
ME = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZB"
ROLES = ("owner", "admin", "member", None)
USER = Principal(token_id=None, name="someone", role="user", user_id=ME)
ADMIN = Principal(token_id=None, name="root", role="admin")
SERVICE = Principal(token_id=None, name="deployer", role="service")

Y, F, H, U = "allowed", Forbidden, NotFound, Unprocessable  # allowed, 403, 404, 422


def team(role):
    return TeamResource(TEAM, role)


def document(role):
    return DocumentResource(team=team(role))


def application(role):
    return ApplicationResource("01JCZ5J7Q9T1V0G6W8E2X4Y6ZC", team(role))


# action, resource per role, expected for owner / admin / member / not a member
TABLE = [
    (Action.READ_TEAM, team, (Y, Y, Y, H)),
    (Action.READ_DOCUMENT, document, (Y, Y, Y, H)),
    (Action.WRITE_DOCUMENT, document, (Y, Y, F, H)),
    (Action.DECIDE_PROPOSAL, document, (Y, Y, F, H)),
    (Action.PROPOSE, document, (Y, Y, Y, H)),
    (Action.CHANGE_MEMBERSHIP, lambda role: MembershipChange(team(role), frozenset({"member", "admin"})), (Y, Y, F, H)),
    (Action.CHANGE_MEMBERSHIP, lambda role: MembershipChange(team(role), frozenset({"owner"})), (Y, F, F, H)),
    (Action.UPDATE_TEAM, team, (Y, F, F, H)),
    (Action.DELETE_TEAM, team, (Y, F, F, H)),
    (Action.READ_APPLICATION, application, (Y, Y, Y, H)),
    (Action.WRITE_APPLICATION, application, (Y, Y, F, H)),
    (Action.MOVE_APPLICATION, lambda role: TeamMove(team(role), None), (Y, F, F, H)),
    (Action.MOVE_APPLICATION, lambda role: TeamMove(None, team(role)), (Y, Y, F, U)),
    (Action.MOVE_APPLICATION, lambda role: TeamMove(team("owner"), team(role)), (Y, Y, F, U)),
    (Action.MOVE_APPLICATION, lambda role: TeamMove(team(role), team("owner")), (Y, F, F, H)),
]


def _outcome(principal: Principal, action: Action, resource) -> object:
    try:
        policy.require(principal, action, resource)
    except (Forbidden, NotFound, Unprocessable) as exc:
        return type(exc)
    return Y


@pytest.mark.parametrize(("action", "resource", "expected"), TABLE, ids=[row[0].value for row in TABLE])
def test_team_roles_follow_the_spec_table(action, resource, expected):
    assert tuple(_outcome(USER, action, resource(role)) for role in ROLES) == expected
    assert _outcome(ADMIN, action, resource(None)) == Y  # admin tokens may do everything
    assert policy.can(USER, action, resource("owner")) == (expected[0] == Y)


@pytest.mark.parametrize(("action", "resource", "_"), TABLE[:9], ids=[row[0].value for row in TABLE[:9]])
def test_service_tokens_see_no_teams(action, resource, _):
    assert _outcome(SERVICE, action, resource(None)) is Forbidden


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
