"""Read-only aggregates for the console dashboard (member counts, enrollments per month by channel).

Every query here runs on the request's session, so the tenancy filter narrows it to the user's brand
(or every brand for platform users) like any other read. Must not write, and must not duplicate the
list/search queries of ``members.repository``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from huiyuan.members.models import Member


class DashboardRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def status_counts(self) -> dict[str, int]:
        stmt = select(Member.status, func.count(Member.id)).group_by(Member.status)
        return {status: int(n) for status, n in self.session.execute(stmt)}

    def _month(self, timezone: str, now: datetime) -> ColumnElement[str]:
        if self.session.get_bind().dialect.name == "postgresql":
            return func.to_char(func.timezone(timezone, Member.enrolled_at), "YYYY-MM")
        # SQLite has no time zones: shift by the zone's current offset (exact for Asia/Shanghai,
        # which has no daylight saving; off by an hour at most around DST changes elsewhere).
        offset = now.astimezone(ZoneInfo(timezone)).utcoffset() or timedelta(0)
        minutes = int(offset.total_seconds() // 60)
        return func.strftime("%Y-%m", func.datetime(Member.enrolled_at, f"{minutes:+d} minutes"))

    def enrollments_by_month(
        self, *, since: datetime, timezone: str, now: datetime
    ) -> list[tuple[str, str, int]]:
        """``(YYYY-MM, channel, count)`` of members enrolled since ``since``, months in ``timezone``."""
        # Group over a subquery: PostgreSQL binds the month expression's parameters separately in
        # SELECT and GROUP BY and would not see them as the same expression.
        inner = (
            select(self._month(timezone, now).label("month"), Member.enroll_channel.label("channel"))
            .where(Member.enrolled_at >= since)
            .subquery()
        )
        stmt = (
            select(inner.c.month, inner.c.channel, func.count())
            .group_by(inner.c.month, inner.c.channel)
            .order_by(inner.c.month, inner.c.channel)
        )
        return [(str(m), str(ch), int(n)) for m, ch, n in self.session.execute(stmt)]
