"""Console pages of the member profile: search (``/console/profile?q=``, or POSTed from the form so
phone numbers stay out of URLs, browser history and access logs) and one person's page
(``/console/profile/{oneid}``, or ``/console/profile/member/{id}`` for a member): record and
identifiers, an ECharts force-layout graph of the identity links, loyalty cards, recent orders,
salient features, and the behaviour timeline with kind filter chips and "more" pages through HTMX.

Handlers call ``profile.service`` — the same reads as ``profile.api`` — which masks PII unless the
console user holds ``members:pii``, leaves out sections the user may not read and answers 404 for
another brand's OneID or member. No queries or business rules here: this module only shapes the
service's answers for the templates (labels, the graph's ECharts options, the chips' links).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from huiyuan.console.deps import Console, requires
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.identity.rules import DEFAULT_CODES
from huiyuan.kit.errors import AppError
from huiyuan.profile import service
from huiyuan.profile.schemas import TIMELINE_KINDS, GraphOut, ProfileOut, TimelineKind, TimelinePage

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("members:read")]
TIMELINE_PAGE = 20
SEARCH_TYPES = (
    "",
    "member_number",
    "oneid",
    "phone",
    "name",
    "device_id",
    "wechat_openid",
    "wechat_unionid",
    "user_id",
    "email",
)


def _reader(console: Console) -> Console:
    # A profile is a OneID's view of members: both read permissions, as in the API.
    console.require("identity:read")
    return console


def _type_label(console: Console, code: str) -> str:
    return translate(console.lang, f"oneid.type.{code}") if code in DEFAULT_CODES else code


# -- search ----------------------------------------------------------------------------------------


def _search_page(request: Request, console: Console, q: str, type_: str) -> Response:
    has_brand = console.brand_id is not None
    context: dict[str, Any] = {
        "has_brand": has_brand,
        "q": q,
        "type": type_,
        "types": [(code, _search_type_label(console, code)) for code in SEARCH_TYPES],
        "label_of": lambda code: _search_type_label(console, code),
        "result": None,
        "errors": [],
    }
    status = 200
    if has_brand and q.strip():
        try:
            context["result"] = service.search(
                console.session, actor=console.principal, q=q, type_=type_ or None
            )
        except AppError as exc:
            if exc.status != 422:
                raise
            context["errors"], status = [exc.detail], exc.status
    return render(request, "profile_search.html", context, status=status)


def _search_type_label(console: Console, code: str) -> str:
    if not code:
        return translate(console.lang, "profile.type_auto")
    if code in ("oneid", "name", "identifier", "any"):
        return translate(console.lang, f"profile.type_{code}")
    return _type_label(console, code)


@router.get("/console/profile")
def search_page(
    request: Request,
    console: Reader,
    q: Annotated[str, Query(max_length=200)] = "",
    type: Annotated[str, Query(max_length=24)] = "",
) -> Response:
    return _search_page(request, _reader(console), q, type)


@router.post("/console/profile")
def search_submit(
    request: Request,
    console: Reader,
    q: Annotated[str, Form(max_length=200)] = "",
    type: Annotated[str, Form(max_length=24)] = "",
) -> Response:
    return _search_page(request, _reader(console), q, type)


# -- one person ------------------------------------------------------------------------------------


def _chart(console: Console, graph: GraphOut) -> dict[str, Any]:
    """ECharts graph options data: one category (colour) per identifier type, the other ends of
    removed links as a grey category; edges labelled source / rule / confidence."""
    categories: list[dict[str, Any]] = [{"name": _type_label(console, t)} for t in graph.categories]
    categories.append(
        {"name": translate(console.lang, "oneid.other_oneid"), "itemStyle": {"color": "#9aa5b1"}}
    )
    nodes = []
    for n in graph.nodes:
        label = f"{_type_label(console, n.type)}\n{n.label}" + ("" if n.own else f"\nOneID {n.oneid}")
        own = n.own and n.type in graph.categories
        nodes.append(
            {
                "id": n.id,
                "name": label,
                "category": graph.categories.index(n.type) if own else len(graph.categories),
                "symbolSize": 46 if n.own else 34,
            }
        )
    links = [
        {
            "source": e.source,
            "target": e.target,
            "value": f"{e.link_source} / {e.rule} / {e.confidence:.2f}",
            "status": e.status,
        }
        for e in graph.edges
    ]
    return {"nodes": nodes, "links": links, "categories": categories}


def _kinds_param(kinds: list[TimelineKind]) -> str:
    return ",".join(kinds)


def _chips(console: Console, allowed: list[TimelineKind], active: list[TimelineKind]) -> list[dict[str, Any]]:
    """One chip per kind the user may read: pressing it toggles the kind (never down to none)."""
    chips = []
    for kind in allowed:
        on = kind in active
        toggled = [k for k in allowed if (k in active) != (k == kind)]
        chips.append(
            {
                "kind": kind,
                "label": translate(console.lang, f"profile.kind.{kind}"),
                "on": on,
                "kinds": _kinds_param(toggled or [kind]),
            }
        )
    return chips


def _timeline_context(
    console: Console, person: service.Person, base: str, kinds: str, before: str | None
) -> dict[str, Any]:
    actor = console.principal
    allowed = service.parse_kinds(actor, None)
    active = service.parse_kinds(actor, kinds) if kinds.strip() else allowed
    page: TimelinePage = service.timeline(
        console.session, actor=actor, person=person, kinds=active, before=before, limit=TIMELINE_PAGE
    )
    query = {"kinds": _kinds_param(active)}
    more = (
        base + "/timeline?" + urlencode({**query, "before": page.next_cursor}) if page.next_cursor else None
    )
    return {
        "timeline": page,
        "chips": _chips(console, allowed, active),
        "base": base,
        "more_url": more,
        "all_kinds": list(TIMELINE_KINDS),
    }


def _features(console: Console, profile: ProfileOut) -> list[str]:
    """The salient features as sentences in the user's language."""
    f = profile.features
    if f is None:
        return []
    lang = console.lang
    out = []
    for c in f.categories:
        if c.lift > 1:
            out.append(
                translate(
                    lang,
                    "profile.f.category",
                    name=c.name,
                    lift=f"{c.lift:.2f}",
                    orders=c.orders,
                    spend=c.spend,
                )
            )
    for h in f.active_hours:
        out.append(
            translate(lang, "profile.f.hour", hour=f"{h.hour:02d}", lift=f"{h.lift:.2f}", count=h.count)
        )
    if (ch := f.preferred_channel) is not None:
        name = translate(lang, f"order_channel.{ch.key}")
        out.append(
            translate(
                lang,
                "profile.f.channel",
                name=name,
                share=f"{ch.share * 100:.0f}",
                brand_share=f"{ch.brand_share * 100:.0f}",
            )
        )
    if (st := f.preferred_store) is not None:
        out.append(translate(lang, "profile.f.store", name=st.name or st.key, orders=st.orders))
    if f.aov is not None:
        out.append(translate(lang, "profile.f.aov", value=f"{f.aov.value:,.2f}", p=f"{f.aov.percentile:.0f}"))
    if f.frequency is not None:
        out.append(
            translate(
                lang, "profile.f.frequency", value=int(f.frequency.value), p=f"{f.frequency.percentile:.0f}"
            )
        )
    if f.recency is not None:
        out.append(
            translate(
                lang, "profile.f.recency", days=f"{f.recency.value:.0f}", p=f"{f.recency.percentile:.0f}"
            )
        )
    return out


def _base(person: service.Person) -> str:
    if person.oneid is not None:
        return f"/console/profile/{person.oneid}"
    return f"/console/profile/member/{person.members[0].id}"


def _detail(request: Request, console: Console, person: service.Person, kinds: str) -> Response:
    profile = service.profile(console.session, actor=console.principal, person=person)
    base = _base(person)
    context: dict[str, Any] = {
        "profile": profile,
        "person": person,
        "graph": _chart(console, profile.graph),
        "type_label": {i.type: _type_label(console, i.type) for i in profile.identifiers},
        "features": _features(console, profile),
        **_timeline_context(console, person, base, kinds, None),
    }
    return render(request, "profile_detail.html", context)


@router.get("/console/profile/{oneid:int}")
def person_page(
    request: Request, oneid: int, console: Reader, kinds: Annotated[str, Query(max_length=60)] = ""
) -> Response:
    console = _reader(console)
    person = service.person_by_oneid(console.session, actor=console.principal, oneid=oneid)
    return _detail(request, console, person, kinds)


@router.get("/console/profile/member/{member_id:int}")
def member_page(
    request: Request, member_id: int, console: Reader, kinds: Annotated[str, Query(max_length=60)] = ""
) -> Response:
    console = _reader(console)
    person = service.person_by_member(console.session, actor=console.principal, member_id=member_id)
    return _detail(request, console, person, kinds)


def _timeline(
    request: Request, console: Console, person: service.Person, kinds: str, before: str
) -> Response:
    context = _timeline_context(console, person, _base(person), kinds, before or None)
    # "More" appends rows in place of its own row; a chip replaces the whole timeline section.
    return render(request, "profile_timeline_rows.html" if before else "profile_timeline.html", context)


@router.get("/console/profile/{oneid:int}/timeline")
def person_timeline(
    request: Request,
    oneid: int,
    console: Reader,
    kinds: Annotated[str, Query(max_length=60)] = "",
    before: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    console = _reader(console)
    person = service.person_by_oneid(console.session, actor=console.principal, oneid=oneid)
    return _timeline(request, console, person, kinds, before)


@router.get("/console/profile/member/{member_id:int}/timeline")
def member_timeline(
    request: Request,
    member_id: int,
    console: Reader,
    kinds: Annotated[str, Query(max_length=60)] = "",
    before: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    console = _reader(console)
    person = service.person_by_member(console.session, actor=console.principal, member_id=member_id)
    return _timeline(request, console, person, kinds, before)
