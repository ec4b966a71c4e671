"""The policy module against the documented tables of roles, decision by decision (no database:
the access matrix tests the same decisions through every route). The tables are read from the
documents (docs/security-design.md, the README's Security section): a cell that says otherwise
than the policy decides fails here."""

from __future__ import annotations

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
    UserResource,
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


def product_document(role):
    """A document of a team's application (a product's blueprint, note, ...)."""
    return DocumentResource(application=application(role))


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
    "read the team applications' documents, work items and repositories; propose document changes": [
        (Action.READ_APPLICATION, application), (Action.READ_DOCUMENT, product_document),
        (Action.PROPOSE, product_document),
    ],
    "write them, accept/reject document proposals": [
        (Action.WRITE_APPLICATION, application), (Action.WRITE_DOCUMENT, product_document),
        (Action.DECIDE_PROPOSAL, product_document),
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


def test_scope_gives_each_caller_its_list_filter_and_cache_eligibility():
    scoped = Principal(token_id=None, name="s", role="service", application_id=APP)
    assert policy.scope(ADMIN) == policy.Scope(everything=True, application_id=None, member_id=None, shared_cache=True)
    assert policy.scope(SERVICE) == policy.Scope(everything=False, application_id=None, member_id=None, shared_cache=True)
    assert policy.scope(scoped) == policy.Scope(everything=False, application_id=APP, member_id=None, shared_cache=True)
    # A user's reach hangs on its teams, which the shared cache does not hold.
    assert policy.scope(USER) == policy.Scope(everything=False, application_id=None, member_id=ME, shared_cache=False)


def test_reveal_says_clear_or_masked_and_audits_only_an_asked_reveal():
    revealer = Principal(token_id=None, name="r", role="service", reveal_secrets=True)
    assert policy.reveal(revealer, False) == policy.Reveal(clear=True, audited=False)  # its purpose
    assert policy.reveal(ADMIN, False) == policy.Reveal(clear=False, audited=False)
    assert policy.reveal(ADMIN, True) == policy.Reveal(clear=True, audited=True)
    assert policy.reveal(SERVICE, False) == policy.Reveal(clear=False, audited=False)
    for caller in (SERVICE, USER):
        with pytest.raises(Forbidden):
            policy.reveal(caller, True)


# What each claim of the README's table of callers means, as a check of the policy: the "may"
# cell's claims (separated by ";") each hold; each thing in the "may not" cell is refused, with
# the status the cell gives it.
OTHER_APP = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZD"
SCOPED = Principal(token_id=None, name="s", role="service", application_id=OTHER_APP)
READER = Principal(token_id=None, name="r", role="service", read_only=True)
REVEALER = Principal(token_id=None, name="v", role="service", reveal_secrets=True)


def _shape(role: str, **fields) -> object:
    fields = {"user_id": None, "application_id": None, "reveal_secrets": False} | fields
    try:
        policy.require_token_shape(role, **fields)
    except Unprocessable:
        return U
    return Y


def _all_allowed(principal: Principal, *decisions) -> object:
    outcomes = {_outcome(principal, action, resource) for action, resource in decisions}
    return Y if outcomes == {Y} else outcomes


def _reveal(principal: Principal, asked: bool) -> object:
    try:
        return policy.reveal(principal, asked)
    except Forbidden:
        return F


README_CALLERS = {
    "service token": (
        {
            "applications and configurations, resolve, events": lambda: _all_allowed(
                SERVICE, (Action.LIST_APPLICATIONS, policy.SYSTEM), (Action.WRITE_APPLICATION, ApplicationResource(APP)),
                (Action.RESOLVE, ApplicationResource(APP)),
            ),
            "limited to its application if scoped": lambda: _all_allowed(
                SCOPED, (Action.READ_APPLICATION, ApplicationResource(OTHER_APP)),
            ) if _outcome(SCOPED, Action.READ_APPLICATION, ApplicationResource(APP)) is H else "reaches others",
            "read only if `read_only`": lambda: Y if _outcome(
                READER, Action.WRITE_APPLICATION, ApplicationResource(APP)
            ) is F else "writes",
            "secret values in clear only with `reveal_secrets`": lambda: Y if (
                _reveal(REVEALER, False).clear and _reveal(SERVICE, True) is F
            ) else "reveals",
        },
        {
            "teams": lambda: _outcome(SERVICE, Action.LIST_TEAMS, policy.SYSTEM),
            "users": lambda: _outcome(SERVICE, Action.MANAGE_USERS, policy.SYSTEM),
            "claude.md": lambda: _outcome(SERVICE, Action.BE_A_USER, policy.SYSTEM),
            "catalog": lambda: _outcome(SERVICE, Action.SEARCH_CATALOG, policy.SYSTEM),
            "other applications": lambda: _outcome(SCOPED, Action.READ_APPLICATION, ApplicationResource(APP)),
        },
    ),
    "user token": (
        {
            "itself, its claude.md, its catalog items": lambda: _all_allowed(
                USER, (Action.UPDATE_USER, UserResource(ME)), (Action.WRITE_DOCUMENT, DocumentResource(user_id=ME)),
                (Action.RELEASE_ITEM, DocumentResource(user_id=ME)), (Action.SEARCH_CATALOG, policy.SYSTEM),
            ),
            # The team table above checks this one cell by cell.
            "through its teams: the team's document, items and applications as its role allows": lambda: Y,
        },
        {
            "other users' documents and items": lambda: _outcome(
                USER, Action.READ_DOCUMENT, DocumentResource(user_id=OTHER_APP)
            ),
            "configurations outside its teams": lambda: _outcome(
                USER, Action.READ_APPLICATION, ApplicationResource(APP, team(None))
            ),
            "secret values": lambda: _reveal(USER, True),
        },
    ),
    "admin token": (
        {
            "everything, secret values only per request with `?reveal=true`, each read audited": lambda: Y if (
                all(_outcome(ADMIN, a, r) == Y for a, r in ADMIN_DECISIONS)
                and _reveal(ADMIN, False).clear is False
                and _reveal(ADMIN, True) == policy.Reveal(clear=True, audited=True)
            ) else "not everything",
        },
        {"carry `reveal_secrets` on the token itself": lambda: _shape("admin", reveal_secrets=True)},
    ),
}
ADMIN_DECISIONS = [
    (Action.MANAGE_TOKENS, policy.SYSTEM), (Action.MANAGE_USERS, policy.SYSTEM), (Action.READ_AUDIT, policy.SYSTEM),
    (Action.WRITE_APPLICATION, ApplicationResource(APP)), (Action.RESOLVE, ApplicationResource(APP)),
    (Action.DELETE_TEAM, team(None)), (Action.WRITE_DOCUMENT, DocumentResource(user_id=ME)),
    (Action.DECLASSIFY, ApplicationResource(APP)), (Action.CHANGE_SECRET_SCHEMA, ApplicationResource(APP)),
]
# Rows of the README's table that no token-role rule decides (the team row is the table above).
NOT_POLICYS = {"no token, unknown or revoked token", "team member / admin / owner", "operator with a shell"}
STATUS = {"(403)": F, "(404)": H, "(422)": U}


def readme_callers() -> dict[str, tuple[str, str]]:
    """The README's "Who may do what" table: caller → ("may" cell, "may not" cell)."""
    rows = markdown_table((ROOT / "README.md").read_text(), "| caller | may | may not |")
    return {row[0]: (row[1], row[2]) for row in rows}


def test_every_row_of_the_readme_table_of_callers_is_checked():
    assert set(readme_callers()) == set(README_CALLERS) | NOT_POLICYS


@pytest.mark.parametrize("caller", list(README_CALLERS))
def test_the_readme_table_of_callers_is_what_the_policy_decides(caller):
    may, may_not = readme_callers()[caller]
    claims, refusals = README_CALLERS[caller]
    assert [part.strip() for part in may.split(";")] == list(claims)
    for claim, check in claims.items():
        assert check() == Y, f"{caller} may {claim}: the policy says {check()}"
    listed = []
    for part in (part.strip() for part in may_not.split(";")):
        status = STATUS.get(part.rsplit(" ", 1)[-1])
        things = part.rsplit(" ", 1)[0].split(", ") if status else [part]
        for thing in things:
            listed.append(thing)
            decided = refusals[thing]()
            assert decided == status if status else decided in (F, H, U), f"{caller} may not {thing}: {decided}"
    assert listed == list(refusals)
