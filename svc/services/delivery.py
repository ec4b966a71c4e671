"""Configuration delivery: every read of one configuration (by names for `/resolve`, by id for
`GET /configurations/{id}`) through one in-process cache, long-poll for changes, and the
per-application change stream. Everything here runs on the event loop, so thousands of idle
waiters cost neither threads nor connections: a read that misses the cache is one statement on the
loop's own connections (`AsyncStatements`), and only what needs a transaction goes to the thread pool."""

from __future__ import annotations

import asyncio
import heapq
import logging
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
from anyio.to_thread import run_sync as run_in_threadpool

from svc.cache import InvalidatingCache
from svc.crypto import KeyRing
from svc.db import AsyncStatements, Database
from svc.errors import BadRequest, InvalidToken, NotFound, SecretUnavailable, ServiceError
from svc.listener import CREDENTIALS_CHANNEL, INVALIDATE_CHANNEL, ChangeListener
from svc.metrics import EVENT_STREAMS, LONG_POLL_WAITERS, RESOLVE_CACHE_HITS, RESOLVE_CACHE_MISSES
from svc.repositories.applications import ApplicationRepository
from svc.repositories.configurations import ConfigurationRepository
from svc.repositories.delivery import ChangeEvent, DeliveryRepository, Resolved, StreamStart
from svc.repositories.tokens import TokenRepository
from svc.services import audit, policy
from svc.services.auth import Principal
from svc.changes import ChangeFeed
from svc.services.configurations import ConfigurationService, document, rendered
from svc.services.policy import Action, ApplicationResource
from svc.services.secret_values import decrypt_at, mask_at
from svc.services.teams import membership

log = logging.getLogger(__name__)

# While the LISTEN connection is down, waiters re-read the database this often instead.
POLL_WHILE_DEAF = 1.0
EVENT_BATCH = 500
# The newest ids a stream remembers from a replay, to not send them again when their
# announcement arrives after the replay read them.
REPLAYED_KEPT = 1_000
_POSITION = re.compile(r"([0-9]{1,19})(?:-([0-9]{1,20}))?")
_MAX_EVENT_ID = 2**63 - 1  # bigint
_MAX_XID = 2**64 - 1  # xid8


@dataclass(frozen=True)
class Position:
    """Where a client resumes a change stream: its SSE event id, `<id>-<floor>`.

    A resume sends every event with an id above `id`, and every event whose transaction id is at
    least `floor`: when the position was handed out, every transaction below the floor had
    finished and its events had been sent. Ids are taken before commit and so commit out of
    order; the floor catches an event whose transaction committed after a later one was sent,
    at the cost of sending again (duplicates) the events of transactions in flight at the time.
    A position without a floor (an id from before floors existed) resumes by id alone.
    """

    id: int
    floor: int | None = None

    def __str__(self) -> str:
        return str(self.id) if self.floor is None else f"{self.id}-{self.floor}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """The position a client sent back as `Last-Event-ID`; BadRequest unless this service made it."""
        match = _POSITION.fullmatch(text.strip())
        if match is None or int(match[1]) > _MAX_EVENT_ID or (match[2] is not None and int(match[2]) > _MAX_XID):
            raise BadRequest("Last-Event-ID must be the id of an event this stream sent (digits, or digits-digits)")
        return cls(int(match[1]), None if match[2] is None else int(match[2]))


@dataclass(frozen=True)
class StreamedChange:
    """One event of a change stream, and the position a client resumes from after it."""

    event: ChangeEvent
    position: Position


@dataclass(frozen=True)
class ByName:
    """A configuration as `/resolve` serves it: its JSON alone, addressed by names.
    `revealed` says which rendering the entry holds (secrets masked or in clear)."""

    application_name: str
    configuration_name: str
    revealed: bool = False
    action = Action.RESOLVE

    def cacheable_for(self, actor: Principal, reveal: policy.Reveal) -> bool:
        """Always: RESOLVE admits only callers whose scope is the shared cache's, and an audited
        reveal is recorded after the read (`_audited`)."""
        return True

    def not_found(self) -> NotFound:
        return NotFound(
            f"configuration '{self.configuration_name}' of application '{self.application_name}' not found"
        )


@dataclass(frozen=True)
class ById:
    """A configuration as `GET /configurations/{id}` serves it: the whole document, by id.
    `representation` names the form of the body and `revealed` its rendering, so none share an entry."""

    configuration_id: str
    representation: str = "document"
    revealed: bool = False
    action = Action.READ_APPLICATION

    def cacheable_for(self, actor: Principal, reveal: policy.Reveal) -> bool:
        """As the caller's scope says (`policy.scope`); an audited reveal is recorded in the same
        transaction as its read, never from the cache."""
        return policy.shared_cache(actor) and not reveal.audited

    def not_found(self) -> NotFound:
        return NotFound(f"configuration {self.configuration_id} not found")


Key = ByName | ById
REPRESENTATIONS = ("document",)  # every `ById.representation`: a change drops them all, in both renderings


def _require_visible(actor: Principal, found: Resolved | None, key: Key) -> None:
    """A configuration that does not exist and one the actor may not see look the same (404)."""
    if found is None or not policy.can(actor, key.action, ApplicationResource(found.application_id)):
        raise key.not_found()


_GONE = object()  # queued to the streams of a deleted application: they end
_RECHECK = object()  # queued to every stream when a caller may have lost access: it re-checks its own


class DeliveryService:
    def __init__(
        self,
        db: Database,
        statements: AsyncStatements,
        keyring: KeyRing,
        *,
        cache_max_bytes: int,
        event_retention_hours: int,
        configurations: ConfigurationService,
    ) -> None:
        self.db = db
        self.statements = statements  # the cache's misses: one statement each, on the loop
        self.keyring = keyring
        # Reads by id for a caller the cache cannot judge, and the rendering of a document by id.
        self.configurations = configurations
        self.event_retention_hours = event_retention_hours
        self.cache: InvalidatingCache[Resolved] = InvalidatingCache(
            max_cost=cache_max_bytes, cost=lambda r: len(r.body) + 256
        )
        self._loads: dict[Key, tuple[int, asyncio.Task]] = {}
        self._waiters: defaultdict[str, set[asyncio.Future]] = defaultdict(set)
        self._streams: defaultdict[str, set[asyncio.Queue]] = defaultdict(set)
        self._checks: set[asyncio.Task] = set()
        self._changes: ChangeFeed | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Bumped whenever a caller may have lost access (a token, user, membership or application
        # changed): a stream or long-poll re-checks its caller before it sends anything more, once
        # per bump (`_access_checks` shares that check between the streams of one caller).
        self._credentials_epoch = 0
        self._access_checks: dict[tuple[Principal, str], asyncio.Future] = {}

    # --- wiring ---------------------------------------------------------------------------

    def attach(self, listener: ChangeListener, changes: ChangeFeed) -> None:
        self._changes = changes
        self._loop = asyncio.get_running_loop()
        changes.subscribe(self._on_change)
        changes.on_state(self._on_feed_state)
        listener.subscribe(INVALIDATE_CHANNEL, self._on_invalidate)
        listener.subscribe(CREDENTIALS_CHANNEL, self._on_credentials)

    def _on_change(self, change: dict[str, Any]) -> None:
        for revealed in (False, True):
            self.cache.invalidate(ByName(change["application_name"], change["configuration_name"], revealed))
            for representation in REPRESENTATIONS:
                self.cache.invalidate(ById(change["configuration_id"], representation, revealed))
        self._wake(self._waiters.pop(change["configuration_id"], ()))
        if not self.cache.enabled:
            # Deaf (this change was caught up from the table): a revocation may be unheard too.
            self._credentials_changed()
        event = ChangeEvent(
            id=change["id"],
            application_id=change["application_id"],
            configuration_id=change["configuration_id"],
            name=change["configuration_name"],
            revision=change["revision"],
            kind=change["kind"],
        )
        floor = self._changes.floor if self._changes is not None else None
        for queue in self._streams.get(event.application_id, ()):
            queue.put_nowait((event, floor))

    def _on_invalidate(self, payload: str) -> None:
        if payload == "applications":  # a rename or delete: names may now mean something else
            self.cache.clear()
            self._wake_everyone()
            self._end_streams_of_deleted_applications()

    def _on_feed_state(self, connected: bool) -> None:
        self.cache.set_enabled(connected)
        self._wake_everyone()
        if connected:
            # Changes missed meanwhile reach the streams through the feed's catch-up; a deletion
            # or a revocation may have gone unheard.
            self._end_streams_of_deleted_applications()
            self._credentials_changed()

    def _on_credentials(self, payload: str) -> None:
        self._credentials_changed()

    def credentials_changed_soon(self) -> None:
        """From any thread, once a revocation has committed and before its response is sent: this
        worker's streams then re-check their callers before anything else reaches them, even if
        the NOTIFY is read later."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._credentials_changed)

    def _credentials_changed(self) -> None:
        self._credentials_epoch += 1
        self._access_checks = {}
        self._wake_everyone()
        for queues in self._streams.values():
            for queue in queues:
                queue.put_nowait(_RECHECK)

    async def _recheck(self, actor: Principal, application_id: str, checked: int) -> int:
        """The epoch the caller's access was last confirmed at, re-checked first if credentials
        changed since `checked` (free otherwise). Raises as `_check_access` does once access is lost."""
        while checked != self._credentials_epoch:
            checked = self._credentials_epoch
            key = (actor, application_id)
            check = self._access_checks.get(key)
            if check is None:
                check = asyncio.ensure_future(run_in_threadpool(self._check_access, actor, application_id))
                check.add_done_callback(_retrieve)
                self._access_checks[key] = check
            await asyncio.shield(check)
        return checked

    def _check_access(self, actor: Principal, application_id: str) -> bool:
        """Raise unless the caller may still stream the application: its token live and unchanged
        (else 401), the application reachable (through its team's membership) under the policy
        (else 404 or 403). Return whether the application exists: a deletion ends its streams
        after its `deleted` events (see `_end_streams_of_missing`), not here."""
        with self.db.transaction() as tx:
            token = None if actor.token_id is None else TokenRepository(tx).live(actor.token_id)
            application = ApplicationRepository(tx).get(application_id)
            team = None if application is None else membership(tx, actor, application.team_id)
        if actor.token_id is not None and (token is None or Principal.of_token(token) != actor):
            raise InvalidToken("the token has been revoked or changed")
        policy.require(actor, Action.RESOLVE, ApplicationResource(application_id, team))
        return application is not None

    def _end_streams_of_deleted_applications(self) -> None:
        """Look up (once, for all) which streamed applications still exist; end the others' streams."""
        if not self._streams:
            return
        task = asyncio.ensure_future(self._end_streams_of_missing(list(self._streams)))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _end_streams_of_missing(self, application_ids: list[str]) -> None:
        try:
            missing = await run_in_threadpool(self._missing_applications, application_ids)
        except Exception:  # the listener's reconnect or the next deletion looks again
            log.warning("could not check which streamed applications still exist", exc_info=True)
            return
        for application_id in missing:
            for queue in self._streams.get(application_id, ()):
                queue.put_nowait(_GONE)

    def _missing_applications(self, application_ids: list[str]) -> list[str]:
        with self.db.transaction() as tx:
            repo = DeliveryRepository(tx)
            return [id_ for id_ in application_ids if not repo.application_exists(id_)]

    def _wake_everyone(self) -> None:
        waiters, self._waiters = self._waiters, defaultdict(set)
        for futures in waiters.values():
            self._wake(futures)

    @staticmethod
    def _wake(futures) -> None:
        for future in futures:
            if not future.done():
                future.set_result(None)

    # --- reads through the cache ------------------------------------------------------------

    def cached(self, actor: Principal, key: Key, *, reveal: bool = False) -> Resolved | None:
        """The configuration from the cache (a hit is counted), or None when the cache does not
        hold it. Raises as `read` does when `actor` may not read it (or ask to `reveal`)."""
        shown = policy.reveal(actor, reveal)
        key = replace(key, revealed=shown.clear)
        if not key.cacheable_for(actor, shown):
            return None
        # Within the caller's own scope: only its role is checked before the lookup.
        policy.require(actor, key.action, ApplicationResource(actor.application_id))
        found = self.cache.get(key)
        if found is not None:
            _require_visible(actor, found, key)
            RESOLVE_CACHE_HITS.inc()
        return found

    async def read(self, actor: Principal, key: Key, *, reveal: bool = False) -> Resolved:
        """The current configuration, by names or by id: from the cache when it can be trusted,
        else one statement on the loop (by id for a user token or an admin's reveal: a transaction
        in the thread pool, the request's only thread hop). Secrets are masked
        unless `policy.reveal(actor, reveal)` says clear; a read it says to audit is audited."""
        return await self._audited(actor, key, await self._current(actor, key, reveal=reveal))

    async def _current(self, actor: Principal, key: Key, *, reveal: bool) -> Resolved:
        """`read`'s answer, without its audit."""
        shown = policy.reveal(actor, reveal)
        key = replace(key, revealed=shown.clear)
        if not key.cacheable_for(actor, shown):
            return await self._read_as_member(actor, key)
        found = self.cached(actor, key, reveal=key.revealed)
        if found is not None:
            return found
        RESOLVE_CACHE_MISSES.inc()
        try:
            found = await self._load(key)
        except SecretUnavailable:
            # Only a caller who may see the configuration learns that its secret cannot be opened.
            _require_visible(actor, await self._read(replace(key, revealed=False)), key)
            raise
        _require_visible(actor, found, key)
        return found

    async def resolve(
        self, actor: Principal, application_name: str, configuration_name: str, *, reveal: bool = False
    ) -> Resolved:
        """The current configuration's JSON, by names."""
        return await self.read(actor, ByName(application_name, configuration_name), reveal=reveal)

    async def _read_as_member(self, actor: Principal, key: ById) -> Resolved:
        """By id through the configurations service (in the thread pool), which checks the caller's
        teams and audits a reveal."""
        configuration, version = await self.configurations.get(actor, key.configuration_id, reveal=key.revealed)
        return Resolved(
            configuration.id,
            configuration.application_id,
            configuration.revision,
            document(configuration),
            configuration.secret_paths,
            revealed=version != configuration.version,  # the service reveals only where there is a secret
        )

    async def _load(self, key: Key) -> Resolved | None:
        # Concurrent misses for one key share one query (1,000 woken waiters make one read),
        # but only with a load that started after the latest invalidation.
        generation = self.cache.generation
        running = self._loads.get(key)
        if running is None or running[0] != generation:
            task = asyncio.ensure_future(self._fetch(key, generation))
            self._loads[key] = (generation, task)
            task.add_done_callback(lambda _, key=key, task=task: self._forget_load(key, task))
            running = (generation, task)
        return await asyncio.shield(running[1])

    def _forget_load(self, key: Key, task: asyncio.Task) -> None:
        if self._loads.get(key, (None, None))[1] is task:
            del self._loads[key]

    async def _fetch(self, key: Key, generation: int) -> Resolved | None:
        found = await self._read(key)
        if found is not None:
            self.cache.put(key, found, generation)
        return found

    async def _read(self, key: Key) -> Resolved | None:
        """The key's rendering of the configuration: one statement on the loop, then masked or
        opened (503 naming the key id when a secret cannot be opened)."""
        if isinstance(key, ByName):
            stored = await DeliveryRepository(self.statements).resolve(key.application_name, key.configuration_name)
            return None if stored is None else self._render(stored, key.revealed)
        row = await ConfigurationRepository(self.statements).get(key.configuration_id)
        if row is None:
            return None
        revealed = key.revealed and bool(row.secret_paths)
        shown = rendered(row, self.keyring, revealed=revealed)
        return Resolved(row.id, row.application_id, row.revision, document(shown), row.secret_paths, revealed)

    def _render(self, stored: Resolved, revealed: bool) -> Resolved:
        """The body a caller gets by names: secrets masked, or opened."""
        if not stored.secret_paths:
            return stored
        document = orjson.loads(stored.body)
        if revealed:
            document = decrypt_at(document, stored.secret_paths, self.keyring, stored.configuration_id)
        else:
            document = mask_at(document, stored.secret_paths)
        return replace(stored, body=orjson.dumps(document), revealed=revealed)

    async def _audited(self, actor: Principal, key: Key, found: Resolved) -> Resolved:
        """`found`, once a read of its secret values in clear by names is audited where `policy.reveal`
        says so (by id, the configurations service audits it in the read's own transaction, and
        such a read is never cached)."""
        if found.revealed and isinstance(key, ByName) and policy.reveal(actor, found.revealed).audited:
            await run_in_threadpool(self._record_reveal, actor, found)
        return found

    def _record_reveal(self, actor: Principal, found: Resolved) -> None:
        with self.db.transaction() as tx:
            detail = {"application_id": found.application_id, "revision": found.revision, "via": "resolve"}
            audit.record(tx, actor, "configuration.reveal", "configuration", found.configuration_id, detail)
            tx.commit()

    async def wait_for_change(
        self,
        actor: Principal,
        application_name: str,
        configuration_name: str,
        known: frozenset[str],
        wait: float,
        *,
        reveal: bool = False,
    ) -> Resolved | None:
        """Hold until the configuration's version is not one of `known`; None when `wait` runs out.

        Raises NotFound when the configuration is deleted meanwhile, and InvalidToken (or as
        `policy.require`) as soon as the caller loses access: nothing is answered after that.
        The answer is audited as `read`'s.
        """
        key = ByName(application_name, configuration_name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        checked = self._credentials_epoch
        current = await self._current(actor, key, reveal=reveal)
        LONG_POLL_WAITERS.inc()
        try:
            while True:
                checked = await self._recheck(actor, current.application_id, checked)
                if current.version not in known:
                    return await self._audited(actor, key, current)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                future = loop.create_future()
                waiters = self._waiters[current.configuration_id]
                waiters.add(future)
                try:
                    # Re-read after registering: a change that landed in between is not missed.
                    current = await self._current(actor, key, reveal=reveal)
                    if current.version not in known:
                        continue  # answered at the loop's top, once access is confirmed
                    timeout = remaining if self.cache.enabled else min(remaining, POLL_WHILE_DEAF)
                    try:
                        await asyncio.wait_for(future, timeout)
                    except TimeoutError:
                        pass
                finally:
                    waiters.discard(future)
                    if not waiters and self._waiters.get(current.configuration_id) is waiters:
                        del self._waiters[current.configuration_id]
                current = await self._current(actor, key, reveal=reveal)
        finally:
            LONG_POLL_WAITERS.dec()

    # --- change stream ----------------------------------------------------------------------

    async def open_stream(
        self, actor: Principal, application_id: str, resume: Position | None, keepalive: float
    ) -> AsyncIterator[StreamedChange | Position | None]:
        """Every committed change of the application's configurations, each with the position to
        resume from after it; None is a keep-alive, and so is a Position: one later than the
        previous, to resume from with fewer repeats (sent when idle, once the feed has moved on). Changes come in the order this worker hears
        of them: ids may arrive a little out of order. The stream ends when the application is
        deleted, and as soon as the caller loses access (token revoked or changed, user,
        membership or application gone).

        From `resume`, the stream first replays every change after that position (within the
        retention period; some may come again). Access and existence are checked here, before
        anything is streamed; the stream subscribes when it is first iterated, so one never
        iterated holds nothing.
        """
        policy.require(actor, Action.RESOLVE, ApplicationResource(application_id))
        checked = self._credentials_epoch
        if not await run_in_threadpool(self._check_access, actor, application_id):
            raise NotFound(f"application {application_id} not found")
        return self._stream(actor, application_id, resume, keepalive, checked)

    async def _stream(
        self, actor: Principal, application_id: str, resume: Position | None, keepalive: float, checked: int
    ) -> AsyncIterator[StreamedChange | Position | None]:
        queue: asyncio.Queue = asyncio.Queue()
        self._streams[application_id].add(queue)  # subscribed before the backlog is read: nothing falls between
        EVENT_STREAMS.inc()
        try:
            start = await run_in_threadpool(self._stream_start, application_id)
            if start is None:  # deleted since open_stream looked
                return
            # Every change this stream has not sent yet has an xid at least `start.floor`: the
            # ones visible at the start are replayed below (in id order) or were before it; the
            # others had not committed and reach the queue.
            replayed: set[int] = set()  # read from the table, and may still come through the queue
            position = Position(start.latest if resume is None else resume.id, start.floor)
            if resume is not None:
                async for event in self._backlog(application_id, resume):
                    if checked != self._credentials_epoch:
                        checked = await self._recheck(actor, application_id, checked)
                    position = Position(max(position.id, event.id), start.floor)
                    yield StreamedChange(event, Position(event.id, start.floor))
                    replayed.add(event.id)
                replayed = set(heapq.nlargest(REPLAYED_KEPT, replayed))
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), keepalive)
                except TimeoutError:
                    item = None
                if item is _GONE:
                    return
                if checked != self._credentials_epoch:
                    checked = await self._recheck(actor, application_id, checked)
                if item is None:
                    # Idle: everything handed over has been sent, so anything still to come has
                    # an xid at least the feed's floor, whatever its id.
                    floor = self._changes.floor if self._changes is not None else None
                    later = Position(position.id, start.floor if floor is None else max(start.floor, floor))
                    yield None if later == position else later
                    position = later
                elif item is not _RECHECK:
                    event, feed_floor = item
                    if event.id in replayed:
                        replayed.discard(event.id)
                        continue
                    # Every change reaches the queue once, but not in id order: changes committed
                    # on several workers are announced in any order, and ids commit out of order.
                    # Whatever reaches it later has an xid at least the feed's floor of now.
                    floor = start.floor if feed_floor is None else max(start.floor, feed_floor)
                    position = Position(max(position.id, event.id), position.floor)
                    yield StreamedChange(event, Position(event.id, floor))
        except ServiceError as lost:  # the caller lost access: the stream ends here
            log.info("change stream of application %s ended: %s", application_id, lost.detail)
        finally:
            self._unsubscribe(application_id, queue)
            EVENT_STREAMS.dec()

    def _unsubscribe(self, application_id: str, queue: asyncio.Queue) -> None:
        streams = self._streams.get(application_id)
        if streams is not None:
            streams.discard(queue)
            if not streams:
                del self._streams[application_id]

    def _stream_start(self, application_id: str) -> StreamStart | None:
        with self.db.transaction() as tx:
            repo = DeliveryRepository(tx)
            return repo.stream_start(application_id) if repo.application_exists(application_id) else None

    async def _backlog(self, application_id: str, resume: Position) -> AsyncIterator[ChangeEvent]:
        """The changes after `resume`, in id order, page by page."""
        from_id = 0
        while True:
            events = await run_in_threadpool(self._events_after, application_id, resume, from_id)
            for event in events:
                yield event
                from_id = event.id
            if len(events) < EVENT_BATCH:
                return

    def _events_after(self, application_id: str, resume: Position, from_id: int) -> list[ChangeEvent]:
        with self.db.transaction() as tx:
            return DeliveryRepository(tx).events_after(
                application_id, resume.id, resume.floor, from_id=from_id, limit=EVENT_BATCH
            )

    def prune_events(self) -> int:
        """Delete change events older than the retention period; return how many."""
        with self.db.transaction() as tx:
            deleted = DeliveryRepository(tx).prune_events(self.event_retention_hours)
            tx.commit()
        return deleted


def _retrieve(check: asyncio.Future) -> None:
    """Mark a shared access check's failure as seen, even when every stream awaiting it has gone."""
    if not check.cancelled():
        check.exception()
