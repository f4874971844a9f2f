"""The webhook tables: subscriptions, and deliveries from queued to delivered or failed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, select, update

from vitrine.catalog.models import WebhookDelivery, WebhookSubscription, as_utc, utcnow

SUBSCRIPTIONS = WebhookSubscription.__table__
DELIVERIES = WebhookDelivery.__table__
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATES = (PENDING, DELIVERED, FAILED)
# What a subscription's reader sees: never the secret.
PUBLIC = [c for c in SUBSCRIPTIONS.c if c.name != "secret"]
TIMES = ("created_at", "updated_at", "next_attempt_at", "delivered_at")


def _row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in TIMES:
        if name in out:
            out[name] = as_utc(out[name])
    return out


class WebhookStore:
    """Every read and write of ``webhook_subscriptions`` and ``webhook_deliveries``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- subscriptions ----------------------------------------------------------------

    def insert_subscription(self, values: Mapping[str, Any]) -> int:
        now = utcnow()
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(SUBSCRIPTIONS).values(**values, created_at=now, updated_at=now)
            )
            return int(result.inserted_primary_key[0])

    def subscription(self, sub_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*PUBLIC).where(SUBSCRIPTIONS.c.id == sub_id)).first()
        return None if row is None else _row(row._mapping)

    def subscriptions(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(*PUBLIC).order_by(SUBSCRIPTIONS.c.id))
            return [_row(r._mapping) for r in rows]

    def update_subscription(self, sub_id: int, values: Mapping[str, Any]) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(SUBSCRIPTIONS)
                .where(SUBSCRIPTIONS.c.id == sub_id)
                .values(**values, updated_at=utcnow())
            )
        return result.rowcount > 0

    def delete_subscription(self, sub_id: int) -> bool:
        """Delete a subscription and its deliveries."""
        with self.engine.begin() as conn:
            conn.execute(delete(DELIVERIES).where(DELIVERIES.c.subscription_id == sub_id))
            result = conn.execute(delete(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id == sub_id))
        return result.rowcount > 0

    def secrets(self, sub_ids: Sequence[int]) -> dict[int, tuple[str, str, bool]]:
        """Subscription id -> (url, secret, active), for the sender only."""
        columns = (SUBSCRIPTIONS.c.id, SUBSCRIPTIONS.c.url, SUBSCRIPTIONS.c.secret,
                   SUBSCRIPTIONS.c.active)  # fmt: skip
        with self.engine.connect() as conn:
            rows = conn.execute(select(*columns).where(SUBSCRIPTIONS.c.id.in_(list(sub_ids))))
            return {r.id: (r.url, r.secret, bool(r.active)) for r in rows}

    def counts(self, sub_id: int | None = None) -> dict[int, dict[str, int]]:
        """Subscription id -> deliveries by state (of one subscription, when named)."""
        query = select(DELIVERIES.c.subscription_id, DELIVERIES.c.state, func.count()).group_by(
            DELIVERIES.c.subscription_id, DELIVERIES.c.state
        )
        if sub_id is not None:
            query = query.where(DELIVERIES.c.subscription_id == sub_id)
        out: dict[int, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for sub_id, state, n in conn.execute(query):
                out.setdefault(sub_id, dict.fromkeys(STATES, 0))[state] = int(n)
        return out

    # -- deliveries -------------------------------------------------------------------

    def queue(self, kind: str, event_id: str, payload: Mapping[str, Any],
              sub_ids: Sequence[int] | None = None) -> list[int]:  # fmt: skip
        """One pending delivery of the event for each active subscription to ``kind`` (or
        for the subscriptions ``sub_ids``, active or not); returns their ids. A
        subscription that has this event already gets no second copy."""
        now = utcnow()
        ids: list[int] = []
        with self.engine.begin() as conn:
            query = select(SUBSCRIPTIONS.c.id, SUBSCRIPTIONS.c.events)
            if sub_ids is None:
                query = query.where(SUBSCRIPTIONS.c.active.is_(True))
            else:
                query = query.where(SUBSCRIPTIONS.c.id.in_(list(sub_ids)))
            targets = [r.id for r in conn.execute(query) if sub_ids is not None or kind in r.events]
            if not targets:
                return ids
            known = set(
                conn.scalars(
                    select(DELIVERIES.c.subscription_id).where(
                        DELIVERIES.c.event_id == event_id,
                        DELIVERIES.c.subscription_id.in_(targets),
                    )
                )
            )
            for sub_id in targets:
                if sub_id in known:
                    continue
                result = conn.execute(
                    insert(DELIVERIES).values(
                        subscription_id=sub_id, event_id=event_id, event=kind,
                        payload=dict(payload), state=PENDING, attempts=0,
                        next_attempt_at=now, created_at=now, updated_at=now,
                    )
                )  # fmt: skip
                ids.append(int(result.inserted_primary_key[0]))
        return ids

    def delivery(self, delivery_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(DELIVERIES).where(DELIVERIES.c.id == delivery_id)).first()
        return None if row is None else _row(row._mapping)

    def deliveries(
        self,
        sub_id: int | None = None,
        state: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """The newest deliveries first (of one subscription, in one state, older than the
        delivery ``before``)."""
        query = select(DELIVERIES).order_by(DELIVERIES.c.id.desc()).limit(limit)
        if sub_id is not None:
            query = query.where(DELIVERIES.c.subscription_id == sub_id)
        if state is not None:
            query = query.where(DELIVERIES.c.state == state)
        if before is not None:
            query = query.where(DELIVERIES.c.id < before)
        with self.engine.connect() as conn:
            return [_row(r._mapping) for r in conn.execute(query)]

    def due(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Pending deliveries whose time has come, oldest first, of active subscriptions."""
        query = (
            select(DELIVERIES)
            .join(SUBSCRIPTIONS, SUBSCRIPTIONS.c.id == DELIVERIES.c.subscription_id)
            .where(
                DELIVERIES.c.state == PENDING,
                DELIVERIES.c.next_attempt_at <= now,
                SUBSCRIPTIONS.c.active.is_(True),
            )
            .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row(r._mapping) for r in conn.execute(query)]

    def claim(self, row: Mapping[str, Any], until: datetime) -> bool:
        """Take a due delivery for an attempt: its next attempt moves to ``until`` (when a
        process dies sending it, it is due again then). False: another process took it."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(DELIVERIES)
                .where(
                    DELIVERIES.c.id == row["id"],
                    DELIVERIES.c.state == PENDING,
                    DELIVERIES.c.next_attempt_at == row["next_attempt_at"],
                )
                .values(next_attempt_at=until)
            )
        return result.rowcount > 0

    def record(self, delivery_id: int, values: Mapping[str, Any]) -> None:
        """The outcome of an attempt (state, attempts, next attempt, status, error)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id == delivery_id)
                .values(**values, updated_at=utcnow())
            )

    def requeue(self, delivery_id: int) -> bool:
        """Send a delivery again now, with a fresh set of attempts."""
        now = utcnow()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id == delivery_id)
                .values(state=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
            )
        return result.rowcount > 0

    def purge(self, before: datetime) -> int:
        """Delete delivered and failed deliveries last changed before ``before``."""
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(DELIVERIES).where(
                    and_(DELIVERIES.c.state != PENDING, DELIVERIES.c.updated_at < before)
                )
            )
        return result.rowcount
