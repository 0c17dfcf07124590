"""Console pages of OneID: lookup by identifier (type and value) or by OneID number, showing the
OneID with all its identifiers, golden record, an ECharts force-layout graph of identifiers and
links (edges labelled source / rule / confidence), the links with an un-merge action (reason
required, confirmed, audited; the page re-renders with the split), the OneID's merge and split
history; a manual merge of two people (each by an identifier or a OneID number, reason required,
confirmed, audited; a merge the per-type limits forbid is shown as the conflict it was recorded as);
and the conflicts list with accept / dismiss.

Handlers call ``identity.service`` (the same reads and verbs as ``identity.api``), which mask
identifier values unless the console user holds ``members:pii`` and answer 404 for another brand's
OneIDs, links and conflicts. The graph's other ends (identifiers of another OneID, after a split)
are read through ``IdentityGraphRepository`` and shown masked. No queries or business rules here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import done, form_errors
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, is_htmx, render
from huiyuan.identity import service
from huiyuan.identity.repository import IdentityGraphRepository
from huiyuan.identity.rules import DEFAULT_CODES
from huiyuan.identity.schemas import ConflictOut, ConflictResolve, MergeIn, OneIdOut
from huiyuan.kit.errors import AppError, NotFound, ValidationFailed, field_error

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("identity:read")]
Writer = Annotated[Console, requires("identity:write")]

CONFLICT_ROWS = 100
CONFLICT_STATUSES = ("open", "accepted", "dismissed")
OTHER = "__other__"


# -- helpers ---------------------------------------------------------------------------------------


def _type_label(console: Console, code: str, label: str | None = None) -> str:
    if code in DEFAULT_CODES:
        return translate(console.lang, f"oneid.type.{code}")
    return label or code


def _types(console: Console) -> list[dict[str, str]]:
    """The brand's enabled identifier types, strongest first, for the search form."""
    settings = service.get_settings(console.session, actor=console.principal)
    return [
        {"code": t.code, "label": _type_label(console, t.code, t.label)} for t in settings.types if t.enabled
    ]


def _graph(console: Console, person: OneIdOut) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """ECharts graph data (nodes, links, categories) and every node's label by node id.

    Links that were removed or refused may end at an identifier of another OneID (the other part of
    a split); those ends are drawn as their own grey category, masked, with their OneID."""
    nodes: dict[int, dict[str, Any]] = {
        i.id: {"type": i.type, "value": i.value, "oneid": person.oneid, "own": True}
        for i in person.identifiers
    }
    repo = IdentityGraphRepository(console.session)
    for link in person.links or []:
        for end in (link.left_id, link.right_id):
            if end not in nodes:
                node = repo.node_by_id(end)
                if node is not None:
                    nodes[end] = {"type": node.type, "value": node.masked, "oneid": node.oneid, "own": False}
    types = list(dict.fromkeys(i.type for i in person.identifiers))
    categories: list[dict[str, Any]] = [{"name": _type_label(console, t)} for t in types]
    categories.append(
        {"name": translate(console.lang, "oneid.other_oneid"), "itemStyle": {"color": "#9aa5b1"}}
    )
    chart_nodes = []
    for node_id, n in nodes.items():
        own = n["own"]
        label = f"{_type_label(console, n['type'])}\n{n['value']}"
        if not own:
            label += f"\nOneID {n['oneid']}"
        chart_nodes.append(
            {
                "id": str(node_id),
                "name": label,
                "category": types.index(n["type"]) if own and n["type"] in types else len(types),
                "symbolSize": 46 if own else 34,
                "value": n["oneid"],
            }
        )
    chart_links = []
    for link in person.links or []:
        if link.left_id not in nodes or link.right_id not in nodes:
            continue
        chart_links.append(
            {
                "source": str(link.left_id),
                "target": str(link.right_id),
                "value": f"{link.source} / {link.rule} / {link.confidence:.2f}",
                "status": link.status,
                "id": str(link.id),
            }
        )
    graph = {"nodes": chart_nodes, "links": chart_links, "categories": categories}
    return graph, nodes


def _result(console: Console, person: OneIdOut, **extra: Any) -> dict[str, Any]:
    graph, nodes = _graph(console, person)
    links = sorted(person.links or [], key=lambda link: (link.status != "active", link.id))
    golden = sorted(person.golden.items())
    return {
        "person": person,
        "graph": graph,
        "nodes": nodes,
        "links": links,
        "golden": golden,
        "history": service.history(console.session, actor=console.principal, oneid=person.oneid),
        "type_label": {i.type: _type_label(console, i.type) for i in person.identifiers},
        "can_write": console.can("identity:write"),
        "unlink_errors": {},
        "unlink_reasons": {},
        "split": None,
        **extra,
    }


# -- lookup ----------------------------------------------------------------------------------------


@router.get("/console/oneid")
def lookup_page(
    request: Request,
    console: Reader,
    type: Annotated[str, Query(max_length=24)] = "",
    value: Annotated[str, Query(max_length=200)] = "",
    oneid: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    has_brand = console.brand_id is not None
    context: dict[str, Any] = {
        "has_brand": has_brand,
        "query": {"type": type, "value": value, "oneid": oneid},
        "types": _types(console) if has_brand else [],
        "errors": [],
        "not_found": False,
        "result": None,
    }
    status = 200
    if has_brand and oneid.strip():
        if not oneid.strip().isdigit():
            context["errors"] = [field_error("oneid", "a OneID is a number", "invalid")]
            status = 422
        else:  # another brand's (or no such) OneID: the 404 page
            person = service.get_person(
                console.session, actor=console.principal, oneid=int(oneid.strip()), include_links=True
            )
            context["result"] = _result(console, person)
    elif has_brand and type.strip() and value.strip():
        try:
            person = service.resolve(
                console.session,
                actor=console.principal,
                type_=type.strip(),
                value=value.strip(),
                include_links=True,
            )
        except NotFound:
            context["not_found"] = True
        except ValidationFailed as exc:
            context["errors"], status = form_errors(exc), exc.status
        else:
            context["result"] = _result(console, person)
    return render(request, "oneid_lookup.html", context, status=status)


@router.post("/console/oneid/links/{link_id}/unlink")
def unlink(
    request: Request,
    link_id: int,
    console: Writer,
    oneid: Annotated[int, Form(ge=1)],
    reason: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Remove a link (un-merge) with its reason; the OneID is shown again with the split it caused."""
    session = console.session
    status = 200
    extra: dict[str, Any] = {}
    if not reason.strip():
        extra = {
            "unlink_errors": {link_id: field_error("reason", "give the reason for unlinking", "missing")},
        }
        status = 422
    else:
        removed, splits = service.unlink(
            session, actor=console.principal, link_id=link_id, reason=reason.strip()
        )
        extra = {"split": {"removed": removed, "splits": splits}}
    person = service.get_person(session, actor=console.principal, oneid=oneid, include_links=True)
    result = _result(console, person, **extra)
    if is_htmx(request):
        return render(request, "oneid_result.html", {"result": result}, status=status)
    context = {
        "has_brand": True,
        "query": {"type": "", "value": "", "oneid": str(oneid)},
        "types": _types(console),
        "errors": [],
        "not_found": False,
        "result": result,
    }
    return render(request, "oneid_lookup.html", context, status=status)


# -- manual merge ----------------------------------------------------------------------------------

MERGE_FIELDS = ("left_type", "left_value", "left_oneid", "right_type", "right_value", "right_oneid", "reason")


def _merge_page(
    request: Request, console: Console, form: dict[str, str], *, status: int = 200, **extra: Any
) -> Response:
    has_brand = console.brand_id is not None
    context: dict[str, Any] = {
        "has_brand": has_brand,
        "types": _types(console) if has_brand else [],
        "form": {name: form.get(name, "") for name in MERGE_FIELDS},
        "can_write": console.can("identity:write"),
        "errors": [],
        "refused": None,
        "blocked": False,
        "reason_missing": False,
        **extra,
    }
    return render(request, "oneid_merge.html", context, status=status)


def _side(form: dict[str, str], side: str) -> dict[str, Any]:
    """One side of the form as the API's ``PersonRef``: the OneID number when one is given, else the
    identifier (type and value)."""
    oneid = form[f"{side}_oneid"].strip()
    if oneid:
        return {"oneid": oneid}
    value = form[f"{side}_value"].strip()
    return {"type": form[f"{side}_type"].strip(), "value": value} if value else {}


@router.get("/console/oneid/merge")
def merge_page(
    request: Request, console: Reader, oneid: Annotated[str, Query(max_length=20)] = ""
) -> Response:
    return _merge_page(request, console, {"left_oneid": oneid.strip()})


@router.post("/console/oneid/merge")
def merge(
    request: Request,
    console: Writer,
    left_type: Annotated[str, Form(max_length=24)] = "",
    left_value: Annotated[str, Form(max_length=200)] = "",
    left_oneid: Annotated[str, Form(max_length=20)] = "",
    right_type: Annotated[str, Form(max_length=24)] = "",
    right_value: Annotated[str, Form(max_length=200)] = "",
    right_oneid: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Merge two people by hand through ``identity.service.merge_manually`` (the API's verb); on
    success the merged OneID is shown with the merge in its history."""
    form = {
        "left_type": left_type,
        "left_value": left_value,
        "left_oneid": left_oneid,
        "right_type": right_type,
        "right_value": right_value,
        "right_oneid": right_oneid,
        "reason": reason,
    }
    try:
        data = MergeIn(left=_side(form, "left"), right=_side(form, "right"), reason=reason)  # type: ignore[arg-type]
        result, _before = service.merge_manually(console.session, actor=console.principal, data=data)
    except ValidationError as exc:
        missing = any(e["loc"][:1] == ("reason",) for e in exc.errors())
        return _merge_page(
            request, console, form, status=422, errors=form_errors(exc), reason_missing=missing
        )
    except AppError as exc:  # no such identifier or OneID here, a junk value
        console.session.rollback()
        return _merge_page(request, console, form, status=exc.status, errors=form_errors(exc))
    if result.status == "conflict":  # recorded: the request's transaction commits it
        refused = {"reason": result.reason or "", "conflict_id": result.conflict_id}
        return _merge_page(request, console, form, status=409, refused=refused)
    if result.status == "blocked":
        return _merge_page(request, console, form, status=409, blocked=True)
    return done(request, f"/console/oneid?oneid={result.oneid}")


# -- conflicts -------------------------------------------------------------------------------------


def _conflicts_page(
    request: Request, console: Console, status: str, *, error: AppError | None = None
) -> Response:
    has_brand = console.brand_id is not None
    rows = (
        IdentityGraphRepository(console.session).conflicts(status=status, after_id=None, limit=CONFLICT_ROWS)
        if has_brand
        else []
    )
    context = {
        "has_brand": has_brand,
        "status": status,
        "statuses": CONFLICT_STATUSES,
        "conflicts": [ConflictOut.model_validate(r) for r in rows[:CONFLICT_ROWS]],
        "more": len(rows) > CONFLICT_ROWS,
        "can_write": console.can("identity:write"),
        "errors": form_errors(error) if error is not None else [],
    }
    return render(request, "oneid_conflicts.html", context, status=error.status if error else 200)


@router.get("/console/oneid/conflicts")
def conflicts_page(request: Request, console: Reader, status: str = "open") -> Response:
    return _conflicts_page(request, console, status if status in CONFLICT_STATUSES else "open")


@router.post("/console/oneid/conflicts/{conflict_id}/resolve")
def resolve_conflict(
    request: Request,
    conflict_id: int,
    console: Writer,
    action: Annotated[str, Form(pattern="^(accept|dismiss)$")],
    note: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    data = ConflictResolve(conflict_id=conflict_id, action=action, note=note.strip() or None)  # type: ignore[arg-type]
    try:
        service.resolve_conflict(console.session, actor=console.principal, data=data)
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        console.session.rollback()
        return _conflicts_page(request, console, "open", error=exc)
    return done(request, "/console/oneid/conflicts")
