"""Every query on outbox events, webhook subscriptions and deliveries.

Tenancy is applied by the session's scope (``kit.db``). The dispatcher and the sender run without a
scope (system) and say explicitly which brand's subscriptions an event goes to: that is what the
query means, not a security filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from huiyuan.outbox.models import OutboxEvent, WebhookDelivery, WebhookSubscription


class OutboxRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def due_events(self, now: datetime, limit: int) -> list[OutboxEvent]:
        stmt = (
            select(OutboxEvent)
            .where(
                OutboxEvent.dispatched_at.is_(None),
                or_(OutboxEvent.next_attempt_at.is_(None), OutboxEvent.next_attempt_at <= now),
            )
            .order_by(OutboxEvent.id)
            .limit(limit)
            # PostgreSQL: two dispatchers never take the same row. SQLite drops FOR UPDATE; there the
            # caller's BEGIN IMMEDIATE already makes it the only writer.
            .with_for_update(skip_locked=True)
        )
        return list(self.session.scalars(stmt))

    def mark_dispatched(self, event_ids: Sequence[int], now: datetime) -> None:
        """Mark events dispatched in one statement (the objects in the session are not updated)."""
        for start in range(0, len(event_ids), 500):
            self.session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(event_ids[start : start + 500]))
                .values(dispatched_at=now, next_attempt_at=None, last_error=None)
                .execution_options(synchronize_session=False)
            )

    def newest_event_at(self) -> datetime | None:
        """When the newest event was written (by the primary key: no scan)."""
        stmt = select(OutboxEvent.occurred_at).order_by(OutboxEvent.id.desc()).limit(1)
        return self.session.scalar(stmt)

    def pending_count(self) -> int:
        stmt = select(func.count()).select_from(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None))
        return int(self.session.scalar(stmt) or 0)

    def event(self, event_id: int) -> OutboxEvent | None:
        return self.session.get(OutboxEvent, event_id)

    def events(self, event_ids: Sequence[int]) -> dict[int, OutboxEvent]:
        if not event_ids:
            return {}
        rows = self.session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(event_ids)))
        return {e.id: e for e in rows}

    # -- subscriptions -----------------------------------------------------------------------------

    def active_subscriptions(self, brand_id: int) -> list[WebhookSubscription]:
        stmt = (
            select(WebhookSubscription)
            .where(WebhookSubscription.brand_id == brand_id, WebhookSubscription.active.is_(True))
            .order_by(WebhookSubscription.id)
        )
        return list(self.session.scalars(stmt))

    def subscription(self, subscription_id: int) -> WebhookSubscription | None:
        stmt = select(WebhookSubscription).where(WebhookSubscription.id == subscription_id)
        return self.session.scalars(stmt).one_or_none()

    def subscriptions(self, *, after_id: int | None, limit: int) -> list[WebhookSubscription]:
        stmt = select(WebhookSubscription)
        if after_id is not None:
            stmt = stmt.where(WebhookSubscription.id > after_id)
        return list(self.session.scalars(stmt.order_by(WebhookSubscription.id).limit(limit)))

    # -- deliveries --------------------------------------------------------------------------------

    def delivery(self, delivery_id: int) -> WebhookDelivery | None:
        stmt = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
        return self.session.scalars(stmt).one_or_none()

    def delivery_for(self, subscription_id: int, event_id: int) -> WebhookDelivery | None:
        stmt = select(WebhookDelivery).where(
            WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.event_id == event_id
        )
        return self.session.scalars(stmt).one_or_none()

    def deliveries(
        self, subscription_id: int, *, status: str | None, before_id: int | None, limit: int
    ) -> list[WebhookDelivery]:
        """Newest first, keyset-paginated on id."""
        stmt = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
        if status:
            stmt = stmt.where(WebhookDelivery.status == status)
        if before_id is not None:
            stmt = stmt.where(WebhookDelivery.id < before_id)
        return list(self.session.scalars(stmt.order_by(WebhookDelivery.id.desc()).limit(limit)))

    def due_deliveries(self, now: datetime, limit: int) -> list[WebhookDelivery]:
        stmt = (
            select(WebhookDelivery)
            .where(
                WebhookDelivery.status == "pending",
                or_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.next_attempt_at <= now),
            )
            .order_by(WebhookDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(self.session.scalars(stmt))

    def subscriptions_by_id(self, ids: Sequence[int]) -> dict[int, WebhookSubscription]:
        if not ids:
            return {}
        rows = self.session.scalars(select(WebhookSubscription).where(WebhookSubscription.id.in_(ids)))
        return {s.id: s for s in rows}

    def delivery_counts(self) -> dict[str, int]:
        stmt = select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
        return {status: int(n) for status, n in self.session.execute(stmt)}
