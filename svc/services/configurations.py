"""Configurations: versioned JSON objects of an application, with optional JSON Schema.

Every change that takes effect (to the JSON, its schema or its comments) makes a new
revision, recorded by one statement that applies only to the revision it was worked out
from (see `_write`), so the revision number, and with it the ETag, identifies one state of
the configuration. A write that would change nothing makes none; a rollback always does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import jsonpatch
import orjson
from anyio.to_thread import run_sync

from svc.batching import Batched
from svc.crypto import KeyRing
from svc.db import AsyncStatements, Database, Transaction
from svc.errors import BadRequest, NotFound, PayloadTooLarge, Unprocessable
from svc.ids import new_id
from svc.repositories.applications import ApplicationRepository
from svc.repositories.configurations import (
    Configuration,
    ConfigurationRepository,
    Event,
    Planned,
    Recorded,
    Revision,
    RevisionRepository,
    State,
    WriteTarget,
    configuration_version,
    state_version,
)
from svc.repositories.secrets import SecretRepository
from svc.threads import in_thread_pool
from svc import changes
from svc.services import audit, policy
from svc.services.applications import reachable_application, require_reachable
from svc.services.auth import Principal
from svc.json_documents import (
    InvalidSchema,
    UnstorableJson,
    check_schema,
    encode,
    merge_patch,
    parse_json,
    violations,
)
from svc.services.pagination import Page, keyset_page
from svc.services.policy import Action, ApplicationResource, TeamResource
from svc.services.preconditions import Condition, EntityTag, Precondition, require_current
from svc.services.secret_values import (
    decrypt_at,
    encrypt_at,
    keep_masked,
    mask_at,
    mask_violations,
    masked_diff,
    seal_earlier,
    uncovered,
    validate_secret_paths,
)

# The fields a write may change; `config` changes make the interesting revisions.
STATE_FIELDS = ("config", "schema", "secret_paths", "comments")

# Unlocked tries before a write takes the row lock: each failed one means another writer succeeded.
OPTIMISTIC_ATTEMPTS = 3

# Computes the changed fields from the current state as the caller sees it (secrets masked);
# a `config` it returns is clear but for masks that keep values.
Proposal = Callable[[Configuration], dict[str, Any]]
# The same, for a write that reads more in its transaction (a rollback, its old revision).
ReadingProposal = Callable[[Configuration, Transaction], dict[str, Any]]


@dataclass(frozen=True)
class JsonPatch:
    """An RFC 6902 document: operations, each a JSON object whose members depend on its `op`."""

    operations: list[dict[str, Any]]


@dataclass(frozen=True)
class _Write:
    """Who changes which configuration, under which preconditions, and how the change is recorded."""

    actor: Principal
    configuration_id: str
    message: str | None
    expected: Precondition | None
    action: str = "configuration.update"
    always_new_revision: bool = False  # a rollback makes a revision even when the state is the same
    audit_detail: dict[str, Any] = field(default_factory=dict)
    proposes_clear: bool = False  # the change's config is clear, not the masked view the caller saw


@dataclass(frozen=True)
class _Plan:
    """A planned update, and what it does to secrets beyond its own revision."""

    planned: Planned
    newly_secret: list[str]  # values secret from now on that were not: sealed in every earlier revision too
    declassified: list[str]  # secret paths the update drops (the caller holds the reveal right): audited

    @property
    def beyond_its_revision(self) -> bool:
        """Whether recording it also rewrites earlier revisions or audits a declassification, in one
        transaction (never in the batched statement)."""
        return bool(self.newly_secret or self.declassified)


class ConfigurationService:
    """Secret values (at each configuration's `secret_paths`) are sealed in every row written and
    masked in everything returned, but for `get(..., reveal=True)` by a caller the reveal rule allows.

    Every public method is a coroutine function, to be awaited on the event loop. Updates and merges
    run there (batched statements, no thread); the others hold a transaction and run in the thread
    pool (`in_thread_pool`): one hop, which their callers no longer make themselves."""

    def __init__(
        self,
        db: Database,
        statements: AsyncStatements,
        keyring: KeyRing,
        *,
        max_config_bytes: int,
        announce: changes.Announce,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.max_config_bytes = max_config_bytes
        self.announce = announce
        repository = ConfigurationRepository(statements)
        # Concurrent writes of one worker share their round trips (svc/batching.py). A busy worker's
        # reads wait up to 4 ms to gather as many writes as its last read took (measured: a third
        # less CPU a write, worker and PostgreSQL, than no wait; 2 ms ended batches early and
        # wrote 7 % less); up to four records in flight, so that none waits for another's commit.
        self._targets = Batched(
            repository.for_writes, key=lambda target: target[0], result_key=lambda t: t.configuration.id,
            gather=0.004,
        )
        self._records = Batched(
            self._record, key=lambda c: c.configuration_id, result_key=lambda r: r.configuration.id, concurrency=4
        )
        self._repository = repository

    # --- reads ---------------------------------------------------------------------------

    @in_thread_pool
    def get(self, actor: Principal, configuration_id: str, *, reveal: bool = False) -> tuple[Configuration, str]:
        """The configuration, secrets masked unless `policy.reveal(actor, reveal)` says clear, and its
        representation's version (a reveal audited where policy says so)."""
        with self.db.transaction() as tx:
            row = _visible(tx, actor, ConfigurationRepository(tx).get(configuration_id), configuration_id)
            shown = policy.reveal(actor, reveal)
            if not (shown.clear and row.secret_paths):
                return _masked(row), row.version
            clear = rendered(row, self.keyring, revealed=True)
            if shown.audited:
                audit.record(
                    tx, actor, "configuration.reveal", "configuration", row.id,
                    {"application_id": row.application_id, "name": row.name, "revision": row.revision},
                )
                tx.commit()
        return clear, configuration_version(row.id, row.revision, revealed=True)

    @in_thread_pool
    def list(
        self,
        actor: Principal,
        application_id: str,
        *,
        limit: int,
        after: str | None = None,
        contains: str | None = None,
    ) -> Page:
        """An application's configurations by id; `contains` (JSON text) keeps those whose config contains it."""
        containment = _containment_filter(contains)
        with self.db.transaction() as tx:
            reachable_application(tx, actor, ApplicationRepository(tx).get(application_id), application_id)
            configurations = ConfigurationRepository(tx)
            return keyset_page(
                lambda n: [
                    _masked(row)
                    for row in configurations.list(application_id, limit=n, after=after, contains=containment)
                ],
                limit,
            )

    @in_thread_pool
    def revisions(self, actor: Principal, configuration_id: str, *, limit: int, after: int | None = None) -> Page:
        """Revisions newest first; the cursor is a revision number."""
        with self.db.transaction() as tx:
            _visible(tx, actor, ConfigurationRepository(tx).get(configuration_id), configuration_id)
            revisions = RevisionRepository(tx)
            return keyset_page(
                lambda n: [_masked(r) for r in revisions.list(configuration_id, limit=n, after=after)],
                limit,
                cursor=lambda r: r.revision,
            )

    @in_thread_pool
    def revision(self, actor: Principal, configuration_id: str, number: int) -> Revision:
        with self.db.transaction() as tx:
            return _masked(self._revision(actor, tx, configuration_id, number))

    @in_thread_pool
    def diff(self, actor: Principal, configuration_id: str, *, from_: int, to: int) -> JsonPatch:
        """The RFC 6902 JSON Patch that turns revision `from_` into revision `to`, secret values masked
        (a changed secret is an operation whose value is the mask)."""
        with self.db.transaction() as tx:
            source = self._revision(actor, tx, configuration_id, from_)
            target = self._revision(actor, tx, configuration_id, to)
        if not (source.secret_paths or target.secret_paths):
            return JsonPatch(jsonpatch.make_patch(source.config, target.config).patch)
        return JsonPatch(masked_diff(
            self._clear(configuration_id, source.config, source.secret_paths),
            source.secret_paths,
            self._clear(configuration_id, target.config, target.secret_paths),
            target.secret_paths,
        ))

    def _revision(self, actor: Principal, tx: Transaction, configuration_id: str, number: int) -> Revision:
        _visible(tx, actor, ConfigurationRepository(tx).get(configuration_id), configuration_id)
        return _existing_revision(tx, configuration_id, number)

    # --- writes --------------------------------------------------------------------------

    @in_thread_pool
    def create(
        self,
        actor: Principal,
        application_id: str,
        *,
        name: str,
        config: Any,
        comments: str | None = None,
        schema: dict[str, Any] | None = None,
        secret_paths: list[str] | None = None,
        message: str | None = None,
    ) -> Configuration:
        """A new configuration at revision 1 (returned with its secrets masked)."""
        configuration_id = new_id()
        paths = secret_paths or []
        with self.db.transaction() as tx:
            application = ApplicationRepository(tx).get(application_id)
            reachable_application(tx, actor, application, application_id, write=True)
            clear = self._clear_proposal(config, paths, previous_clear=None, previous_paths=[])
            self._check(clear, schema, paths)
            recorded = ConfigurationRepository(tx).record_creation(
                State(self._sealed(configuration_id, clear, paths), schema, paths, comments),
                id=configuration_id,
                application_id=application_id,
                name=name,
                event=_event(actor, "configuration.create", configuration_id, "created", message,
                             _audit_detail(application_id, name, before=None, after=1)),
            )
            tx.after_commit(lambda: self.announce(recorded.payload))
            tx.commit()
        return _masked(recorded.configuration)

    async def update(
        self,
        actor: Principal,
        configuration_id: str,
        fields: dict[str, Any],
        *,
        message: str | None = None,
        expected: Precondition | None = None,
    ) -> Configuration:
        """Set the given fields (any of `config`, `schema`, `secret_paths`, `comments`); the others keep
        their values. A mask at a secret path of `config` keeps the stored secret."""
        return await self._write(_Write(actor, configuration_id, message, expected), lambda current: fields)

    async def merge(
        self,
        actor: Principal,
        configuration_id: str,
        patch: Any,
        *,
        message: str | None = None,
        expected: Precondition | None = None,
    ) -> Configuration:
        """Apply a JSON Merge Patch (RFC 7396) to the configuration's JSON."""
        return await self._write(_Write(actor, configuration_id, message, expected), _merging(patch))

    @in_thread_pool
    def rollback(
        self,
        actor: Principal,
        configuration_id: str,
        revision: int,
        *,
        message: str | None = None,
        expected: Precondition | None = None,
    ) -> Configuration:
        """A new revision whose JSON is that of `revision` (checked against the current schema), with
        the secret paths it had: they say which of its values are secret."""

        def old_config(current: Configuration, tx: Transaction) -> dict[str, Any]:
            old = _existing_revision(tx, configuration_id, revision)
            if old.secret_paths and current.schema is not None and not _same(old.schema, current.schema):
                # Its secrets would be checked against a schema they were not stored under: an oracle.
                policy.require(actor, Action.CHANGE_SECRET_SCHEMA, ApplicationResource(current.application_id))
            return {
                "config": self._clear(configuration_id, old.config, old.secret_paths),
                "secret_paths": old.secret_paths,
            }

        write = _Write(
            actor,
            configuration_id,
            message or f"Rollback to revision {revision}",
            expected,
            action="configuration.rollback",
            always_new_revision=True,
            audit_detail={"rolled_back_to": revision},
            proposes_clear=True,
        )
        return self._write_locked(write, old_config)

    @in_thread_pool
    def delete(self, actor: Principal, configuration_id: str, *, expected: Precondition | None = None) -> None:
        """Delete a configuration and its revisions."""
        with self.db.transaction() as tx:
            configurations = ConfigurationRepository(tx)
            write = _Write(actor, configuration_id, None, expected)
            current = _current(write, _locked_target(tx, write))
            changes.publish(
                tx,
                self.announce,
                application_id=current.application_id,
                configuration_id=configuration_id,
                name=current.name,
                revision=current.revision,
                kind="deleted",
            )
            configurations.delete(configuration_id)
            audit.record(
                tx, actor, "configuration.delete", "configuration", configuration_id,
                _audit_detail(current.application_id, current.name, before=current.revision, after=None),
            )
            tx.commit()

    async def _write(self, write: _Write, propose: Proposal) -> Configuration:
        """Read the row, check the preconditions, apply `propose` (to the masked view, unless the write
        `proposes_clear`), validate the clear state, and record the new revision with its secrets sealed.

        Optimistic, on the event loop: the row is read without a lock and the change recorded by one
        statement that applies only while the row is still at the revision read and no other
        transaction holds it (two round trips, each shared with the worker's other writes of the
        moment, no lock held between them, none waited for). When other writers moved or held the
        row every time, the write waits for the row lock (`_write_locked`), so it cannot be starved."""
        for _ in range(OPTIMISTIC_ATTEMPTS):
            current = _current(write, await self._targets((write.configuration_id, write.actor.user_id)))
            plan = self._planned(write, current, propose(_masked(current)))
            if isinstance(plan, Configuration):
                return _masked(plan)
            if plan.beyond_its_revision:
                break
            recorded = await self._records(plan.planned)
            if recorded is not None:
                return _masked(recorded.configuration)
        return await run_sync(lambda: self._write_locked(write, lambda current, tx: propose(current)))

    async def _record(self, changes_: list[Planned]) -> list[Recorded]:
        """Record planned updates in one statement (autocommit: committed when it returns) and announce them."""
        recorded = await self._repository.record_updates(changes_)
        for change in recorded:
            self.announce(change.payload)
        return recorded

    def _write_locked(self, write: _Write, propose: ReadingProposal) -> Configuration:
        """`_write` in one transaction that holds the row lock from its read to its commit."""
        with self.db.transaction() as tx:
            current = _current(write, _locked_target(tx, write))
            plan = self._planned(write, current, propose(_masked(current), tx))
            if isinstance(plan, Configuration):
                return _masked(plan)
            if plan.newly_secret:
                self._seal_earlier_revisions(tx, current.id, plan.newly_secret)
            (recorded,) = ConfigurationRepository(tx).record_updates([plan.planned])
            if plan.declassified:
                audit.record(
                    tx, write.actor, "configuration.declassify", "configuration", current.id,
                    _audit_detail(current.application_id, current.name, before=current.revision,
                                  after=recorded.configuration.revision) | {"secret_paths": plan.declassified},
                )
            tx.after_commit(lambda: self.announce(recorded.payload))
            tx.commit()
        return _masked(recorded.configuration)

    def _planned(self, write: _Write, current: Configuration, change: dict[str, Any]) -> Configuration | _Plan:
        """What `change` makes of `current`: the state and event to record (sealed, validated), or
        `current` itself when nothing would change and the write does not always make a revision.
        403 when it drops a secret path or changes the schema over secret values, unless the caller
        holds the reveal right."""
        proposed = {field: getattr(current, field) for field in STATE_FIELDS} | change
        declassified = self._require_secret_rights(write.actor, current, proposed)
        current_clear = self._clear(current.id, current.config, current.secret_paths)
        if "config" in change and not write.proposes_clear:
            proposed["config"] = self._clear_proposal(
                change["config"], proposed["secret_paths"], current_clear, current.secret_paths
            )
        else:
            proposed["config"] = change.get("config", current_clear)
            self._require_secret_paths(proposed["config"], proposed["secret_paths"])
        self._check(proposed["config"], proposed["schema"], proposed["secret_paths"])
        before = {field: getattr(current, field) for field in STATE_FIELDS} | {"config": current_clear}
        if not write.always_new_revision and all(_same(proposed[f], before[f]) for f in STATE_FIELDS):
            return current
        detail = _audit_detail(
            current.application_id, current.name, before=current.revision, after=current.revision + 1
        ) | write.audit_detail
        state = State(
            self._sealed(current.id, proposed["config"], proposed["secret_paths"]),
            proposed["schema"],
            proposed["secret_paths"],
            proposed["comments"],
        )
        event = _event(write.actor, write.action, current.id, "updated", write.message, detail)
        return _Plan(
            Planned(current.id, state, expected_revision=current.revision, event=event),
            newly_secret=uncovered(proposed["secret_paths"], current.secret_paths),
            declassified=declassified,
        )

    @staticmethod
    def _require_secret_rights(actor: Principal, current: Configuration, proposed: dict[str, Any]) -> list[str]:
        """The secret paths of `current` that `proposed` no longer covers, once the caller may drop
        them; 403 when it may not, or when it changes the schema over secret values."""
        application = ApplicationResource(current.application_id)
        paths = proposed["secret_paths"]
        declassified = uncovered(current.secret_paths, paths if isinstance(paths, list) else [])
        if declassified:
            policy.require(actor, Action.DECLASSIFY, application)
        if current.secret_paths and _schema_changes(proposed["schema"], current.schema):
            policy.require(actor, Action.CHANGE_SECRET_SCHEMA, application)
        return declassified

    def _seal_earlier_revisions(self, tx: Transaction, configuration_id: str, newly_secret: list[str]) -> None:
        """Seal the values at `newly_secret` in every revision so far, so that no clear copy remains."""
        secrets = SecretRepository(tx)
        resealed = []
        for row in secrets.revisions_of(configuration_id):
            sealed = seal_earlier(row.config, row.secret_paths, newly_secret, self.keyring, configuration_id)
            if sealed is not None:
                resealed.append((row.revision, *sealed))
        secrets.set_revisions(configuration_id, resealed)

    # --- secrets -------------------------------------------------------------------------

    def _clear(self, configuration_id: str, stored: Any, paths: list[str]) -> Any:
        """The clear document of a stored one (503 naming the key id when a secret cannot be opened)."""
        return decrypt_at(stored, paths, self.keyring, configuration_id) if paths else stored

    def _sealed(self, configuration_id: str, clear: Any, paths: list[str]) -> Any:
        return encrypt_at(clear, paths, self.keyring, configuration_id) if paths else clear

    def _clear_proposal(self, config: Any, paths: Any, previous_clear: Any, previous_paths: list[str]) -> Any:
        """A caller's `config` with each mask at a kept secret path replaced by the stored value; 422 when
        `paths` do not fit it or a mask stands for no stored secret."""
        self._require_secret_paths(config, paths)
        return keep_masked(config, previous_clear, previous_paths, paths)

    @staticmethod
    def _require_secret_paths(config: Any, paths: Any) -> None:
        if not isinstance(config, dict):
            raise Unprocessable("config must be a JSON object")
        found = validate_secret_paths(config, paths)
        if found:
            listed = "; ".join(f"{v['path'] or '(root)'}: {v['message']}" for v in found)
            raise Unprocessable(f"secret_paths do not fit config: {listed}", errors=found)

    def _check(self, config: Any, schema: dict[str, Any] | None, secret_paths: list[str]) -> None:
        """Refuse a state that may not be stored: not an object (422), too large (413), breaking its schema (422)."""
        if not isinstance(config, dict):
            raise Unprocessable("config must be a JSON object")
        try:
            size = len(encode(config))
        except UnstorableJson as exc:
            raise Unprocessable(f"config cannot be stored: {exc}") from exc
        if size > self.max_config_bytes:
            raise PayloadTooLarge(f"config is {size} bytes as JSON; the limit is {self.max_config_bytes} bytes")
        if schema is None:
            return
        try:
            encode(schema)
            check_schema(schema)
        except UnstorableJson as exc:
            raise Unprocessable(f"schema cannot be stored: {exc}") from exc
        except InvalidSchema as exc:
            raise Unprocessable(str(exc), errors=exc.errors) from exc
        found = mask_violations(violations(schema, config), config, secret_paths)
        if found:
            first = found[0]
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise Unprocessable(
                f"config does not satisfy its schema: at '{first['path'] or '/'}': {first['message']}{more}",
                errors=found,
            )


def rendered(row: Configuration, keyring: KeyRing, *, revealed: bool) -> Configuration:
    """The row as a caller sees it: its secret values in clear when `revealed` (the caller checked
    `policy.reveal` and audits), else masked."""
    if not (revealed and row.secret_paths):
        return _masked(row)
    return replace(row, config=decrypt_at(row.config, row.secret_paths, keyring, row.id))


def document(configuration: Configuration) -> bytes:
    """The JSON of a configuration as the API serves it (what its OpenAPI schema documents)."""
    return orjson.dumps(configuration, option=orjson.OPT_UTC_Z)


def _locked_target(tx: Transaction, write: _Write) -> WriteTarget | None:
    """The row `write` starts from, locked until the transaction ends, with what the access rule needs."""
    targets = ConfigurationRepository(tx).for_writes([(write.configuration_id, write.actor.user_id)], lock=True)
    return next(iter(targets), None)


def _current(write: _Write, target: WriteTarget | None) -> Configuration:
    """The row a write starts from; 404 when missing or invisible, 403 when visible but not
    writable, 412 when a precondition fails."""
    team = None if target is None or target.team_id is None else TeamResource(target.team_id, target.team_role)
    require_reachable(
        write.actor, None if target is None else target.configuration.application_id, team, write=True,
        missing=NotFound(f"configuration {write.configuration_id} not found"),
    )
    current = target.configuration
    require_current(
        _any_representation(write.expected), current.version, subject=f"configuration {write.configuration_id}"
    )
    return current


def _merging(patch: Any) -> Proposal:
    """The change a JSON Merge Patch (RFC 7396) of `config` makes to a configuration."""
    if not isinstance(patch, dict):
        # Refused before the preconditions are looked at: whatever the current state, a
        # patch that is not an object replaces config with a non-object.
        raise Unprocessable("a merge patch of config must be a JSON object (any other value would replace it)")
    try:
        encode(patch)  # bounds the nesting depth before merge_patch recurses into it
    except UnstorableJson as exc:
        raise Unprocessable(f"merge patch cannot be applied: {exc}") from exc
    return lambda current: {"config": merge_patch(current.config, patch)}


def _event(
    actor: Principal, action: str, configuration_id: str, kind: changes.Kind, message: str | None,
    detail: dict[str, Any],
) -> Event:
    return Event(
        author=actor.name,
        message=message,
        kind=kind,
        audit=audit.entry(actor, action, "configuration", configuration_id, detail),
    )


def _any_representation(expected: Precondition | None) -> Precondition | None:
    """The preconditions of a write, where a revealed representation's ETag names its revision as the
    masked one's does: both are the same state."""
    if expected is None:
        return None

    def of_state(condition: Condition | None) -> Condition | None:
        if condition is None or not condition.tags:
            return condition
        tags = frozenset(EntityTag(state_version(t.opaque), t.weak) for t in condition.tags)
        return replace(condition, tags=tags)

    return Precondition(if_match=of_state(expected.if_match), if_none_match=of_state(expected.if_none_match))


def _masked(row: Any) -> Any:
    """A configuration or revision as a caller without reveal sees it: each secret value the mask."""
    return replace(row, config=mask_at(row.config, row.secret_paths)) if row.secret_paths else row


def _existing_revision(tx: Transaction, configuration_id: str, number: int) -> Revision:
    found = RevisionRepository(tx).get(configuration_id, number)
    if found is None:
        raise NotFound(f"configuration {configuration_id} has no revision {number}")
    return found


def _visible(
    tx: Transaction, actor: Principal, row: Configuration | None, configuration_id: str, *, write: bool = False
) -> Configuration:
    """The row, once the caller may read (or write) its application; a missing one and one out
    of a scoped token's reach are both 404."""
    application_id = None if row is None else row.application_id
    application = None if application_id is None else ApplicationRepository(tx).get(application_id)
    missing = NotFound(f"configuration {configuration_id} not found")
    reachable_application(tx, actor, application, application_id or "", write=write, missing=missing)
    return row


def _same(a: Any, b: Any) -> bool:
    """JSON equality (Python's `==` would take 1, 1.0 and true for the same value)."""
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def _schema_changes(proposed: Any, current: dict[str, Any] | None) -> bool:
    """Whether a proposed schema differs from the current one (one that cannot be stored does)."""
    try:
        return not _same(proposed, current)
    except orjson.JSONEncodeError:
        return True


def _containment_filter(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = parse_json(text, "contains")
    if not isinstance(value, dict):
        raise BadRequest('contains must be a JSON object, such as {"feature": true}')
    try:
        encode(value)
    except UnstorableJson as exc:
        raise BadRequest(f"contains cannot be matched: {exc}") from exc
    return value


def _audit_detail(application_id: str, name: str, *, before: int | None, after: int | None) -> dict[str, Any]:
    return {
        "application_id": application_id,
        "name": name,
        "before_revision": before,
        "after_revision": after,
    }
