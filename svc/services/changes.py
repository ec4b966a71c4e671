"""Announcing configuration changes: an event row plus a NOTIFY, in the writer's transaction.

Listeners `LISTEN svc_configuration_changes` and receive, for each committed change, a JSON
payload `{"id", "application_id", "application_name", "configuration_id",
"configuration_name", "revision", "kind"}` where `id` is the `configuration_events` row and
`kind` is `created`, `updated` or `deleted`. NOTIFY is transactional: a change that rolls back
is never announced, and the row and the notification appear together.
"""

from __future__ import annotations

from typing import Literal

from svc.db import Transaction
from svc.repositories.changes import ChangeRepository

CHANNEL = "svc_configuration_changes"

Kind = Literal["created", "updated", "deleted"]


def publish(
    tx: Transaction,
    *,
    application_id: str,
    configuration_id: str,
    name: str,
    revision: int,
    kind: Kind,
) -> int:
    """Record and announce one change inside the caller's transaction (never commits); return the event id.

    Call it while the application row still exists: the notification carries its name.
    """
    return ChangeRepository(tx).publish(
        channel=CHANNEL,
        application_id=application_id,
        configuration_id=configuration_id,
        name=name,
        revision=revision,
        kind=kind,
    )
