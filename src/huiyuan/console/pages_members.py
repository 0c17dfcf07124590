"""Console pages for members: the searchable list and the member detail.

Searches go through ``members.service.list_members`` (name prefix, member number, exact phone via the
blind index, any identifier), details through the members, identity, consent, custom-field, orders
and audit services and repositories; PII is masked unless the user holds ``members:pii``
(``members.service.to_out``).
Searches that may carry PII (phone, identifier) are POSTed so the values never land in URLs, browser
history or access logs. No queries or business rules of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from huiyuan.audit import repository as audit_repository
from huiyuan.console.deps import Console, requires
from huiyuan.console.web import ConsoleRoute, is_htmx, render
from huiyuan.kit.pagination import decode_cursor, encode_cursor
from huiyuan.members import consent, identity
from huiyuan.members import service as members
from huiyuan.members.custom_fields import CustomFieldRepository
from huiyuan.members.models import ENROLL_CHANNELS, MEMBER_STATUSES
from huiyuan.members.repository import MemberFilter, MemberRepository
from huiyuan.orders.repository import orders_for_member

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("members:read")]
PAGE_SIZE = 20
DETAIL_ORDERS = 20
DETAIL_AUDIT = 50


@dataclass
class Search:
    status: str = ""
    channel: str = ""
    q: str = ""
    phone: str = ""
    identifier: str = ""

    def to_filter(self) -> MemberFilter:
        return MemberFilter(
            status=self.status if self.status in MEMBER_STATUSES else None,
            enroll_channel=self.channel if self.channel in ENROLL_CHANNELS else None,
            q=self.q.strip() or None,
            phone=self.phone.strip() or None,
            identifier_value=self.identifier.strip() or None,
        )


def _results(console: Console, search: Search, cursor: str | None) -> dict[str, Any]:
    filters = search.to_filter()
    rows = members.list_members(
        console.session, filters=filters, after_id=decode_cursor(cursor), limit=PAGE_SIZE + 1
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return {
        "members": members.to_out(console.session, rows, show_pii=console.can("members:pii")),
        "next_cursor": encode_cursor(rows[-1].id) if more and rows else None,
        "total": MemberRepository(console.session).count(filters),
        "brand_codes": {b.id: b.code for b in console.brands()},
        "search": search,
        "statuses": MEMBER_STATUSES,
        "channels": ENROLL_CHANNELS,
    }


@router.get("/console/members")
def member_list(
    request: Request, console: Reader, status: str = "", channel: str = "", q: str = ""
) -> Response:
    search = Search(status=status, channel=channel, q=q[:100])
    return render(request, "members.html", _results(console, search, None))


@router.post("/console/members")
def member_search(
    request: Request,
    console: Reader,
    status: Annotated[str, Form(max_length=16)] = "",
    channel: Annotated[str, Form(max_length=24)] = "",
    q: Annotated[str, Form(max_length=100)] = "",
    phone: Annotated[str, Form(max_length=30)] = "",
    identifier: Annotated[str, Form(max_length=200)] = "",
    cursor: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    search = Search(status=status, channel=channel, q=q, phone=phone, identifier=identifier)
    context = _results(console, search, cursor or None)
    if not is_htmx(request):
        return render(request, "members.html", context)
    # Search-as-you-type replaces the results block; "more" appends rows in place of its own row.
    return render(request, "_member_rows.html" if cursor else "_member_results.html", context)


@router.get("/console/members/{member_id}")
def member_detail(request: Request, member_id: int, console: Reader) -> Response:
    session = console.session
    member = members.get_member(session, member_id)  # 404 page for other brands' members
    show_pii = console.can("members:pii")
    record = members.to_out(session, [member], show_pii=show_pii)[0]
    definitions = CustomFieldRepository(session).definitions(member.brand_id, include_retired=True)
    labelled = {d.key: (d.label_en if console.lang == "en" else d.label_zh) for d in definitions}
    custom = [(labelled.get(key, key), value) for key, value in sorted(record.custom.items())]
    consents = consent.consents_of(session, member.id)
    context: dict[str, Any] = {
        "member": record,
        "consents": consents.current,
        "consent_history": consents.history,
        "custom": custom,
        "cards": [identity.card_out(c, show_pii=show_pii) for c in identity.list_cards(session, member.id)],
        "orders": orders_for_member(session, member.id, limit=DETAIL_ORDERS)
        if console.can("orders:read")
        else None,
        "audit": audit_repository.entries(
            session, entity_type="member", entity_id=str(member.id), limit=DETAIL_AUDIT
        )
        if console.can("audit:read")
        else None,
    }
    return render(request, "member_detail.html", context)
