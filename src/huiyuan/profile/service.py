"""The member profile: find a person, assemble what the other domains know about them, and their
behaviour timeline. Read-only: no verbs, no audit rows, no outbox events.

A *person* is a OneID with the member records its member numbers name (a member not yet in the
identity graph is a person of one member, without a OneID). Every read goes through the owning
domain's service or repository — members (lookups by number, blind-indexed phone, name prefix,
identifiers), identity (``person_out``: identifiers, golden record, links), points
(``member_summary``), tiers (``current_tier``), paid (``active_plan``), orders
(``orders_for_member``) — or through ``profile.repository`` for the timeline and the features.
Tenancy comes from the session's scope; a OneID or member of another brand is answered 404.
Identifier values and phones are masked unless the caller holds ``members:pii``.

Sections the caller has no permission for are left out and named in ``hidden``: loyalty needs
``points:read`` / ``tiers:read`` / ``paid:read``, orders and features ``orders:read``, timeline kinds
their domain's read permission (events, orders, points, coupons).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from huiyuan.identity import config
from huiyuan.identity import service as identity
from huiyuan.identity.models import IdentifierNode
from huiyuan.identity.repository import IdentityGraphRepository
from huiyuan.identity.rules import blind_index
from huiyuan.identity.schemas import OneIdOut
from huiyuan.kit import pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members import service as members
from huiyuan.members.models import IDENTIFIER_TYPES, Member
from huiyuan.members.repository import MemberFilter, MemberRepository
from huiyuan.orders.repository import orders_for_member
from huiyuan.orders.views import order_summary
from huiyuan.paid import service as paid
from huiyuan.points import reads as points
from huiyuan.profile import features
from huiyuan.profile.repository import Cursor, ProfileRepository
from huiyuan.profile.schemas import (
    TIMELINE_KINDS,
    GraphEdge,
    GraphNode,
    GraphOut,
    LoyaltyOut,
    MemberBrief,
    PaidPlanOut,
    ProfileIdentifier,
    ProfileOut,
    SearchMatch,
    SearchOut,
    TierOut,
    TimelineItem,
    TimelineKind,
    TimelinePage,
)
from huiyuan.tiers import reads as tiers
from huiyuan.tiers.ladder import load_ladder

SEARCH_LIMIT = 20
RECENT_ORDERS = 10
TIMELINE_MAX = 200
MERGE_HOPS = 10
# Tie-break of the merged timeline at equal times (part of the cursor).
KIND_RANK: dict[TimelineKind, int] = {"event": 0, "order": 1, "points": 2, "coupon": 3}
KIND_PERMISSION: dict[TimelineKind, str] = {
    "event": "events:read",
    "order": "orders:read",
    "points": "points:read",
    "coupon": "coupons:read",
}
# Search types besides identifier types: OneID number, member number, name prefix, anything.
SEARCH_SPECIAL = ("oneid", "member_number", "name", "any")

_PHONE = re.compile(r"(\+?86)?1\d{10}")
_DIGITS = re.compile(r"\d{1,18}")
_MEMBER_NUMBER = re.compile(r"[A-Za-z]{1,8}\d{3,}")


@dataclass
class Person:
    """A OneID (or a member outside the graph) as the profile reads it."""

    brand_id: int
    oneid: int | None
    status: str | None
    members: list[Member]
    nodes: list[IdentifierNode] = field(default_factory=list)
    requested_oneid: int | None = None

    @property
    def member_ids(self) -> list[int]:
        return [m.id for m in self.members]

    def values(self, type_: str) -> list[str]:
        """Plain values of this person's identifiers of one type (decrypted here, never in SQL)."""
        out = [pii.decrypt(n.value_enc) for n in self.nodes if n.type == type_ and n.value_enc]
        return sorted(set(out))

    @property
    def user_ids(self) -> list[str]:
        # Apps often send the member number as Segment's userId; both name the person's events.
        return sorted(set(self.values("user_id")) | {m.member_number for m in self.members})

    @property
    def anonymous_ids(self) -> list[str]:
        return self.values("anonymous_id")


# -- finding a person ------------------------------------------------------------------------------


def _member_number_of(node: IdentifierNode) -> str:
    return pii.decrypt(node.value_enc) if node.value_enc else node.masked


def _person(session: Session, brand_id: int, oneid: int, status: str, requested: int | None) -> Person:
    nodes = IdentityGraphRepository(session).nodes_of([oneid])
    numbers = {_member_number_of(n) for n in nodes if n.type == "member_number"}
    found = ProfileRepository(session).members_by_number(brand_id, numbers)
    return Person(
        brand_id=brand_id,
        oneid=oneid,
        status=status,
        members=found,
        nodes=nodes,
        requested_oneid=requested,
    )


def person_by_oneid(session: Session, *, actor: Principal, oneid: int) -> Person:
    """The person of a OneID; a merged OneID leads to the one it was merged into; 404 otherwise."""
    brand_id = actor.scope.require_brand()
    repo = IdentityGraphRepository(session)
    current = repo.person(oneid)
    hops = 0
    while current is not None and current.status != "active" and current.merged_into and hops < MERGE_HOPS:
        current = repo.person(current.merged_into)
        hops += 1
    if current is None or current.brand_id != brand_id:
        raise NotFound(f"OneID {oneid} was not found.")
    return _person(session, brand_id, current.id, current.status, oneid if current.id != oneid else None)


def _oneids_of_members(session: Session, brand_id: int, found: list[Member]) -> dict[int, int]:
    """``{member id: OneID}`` of those members the identity graph knows."""
    keys = {m.id: ("member_number", blind_index("member_number", m.member_number.strip())) for m in found}
    nodes = IdentityGraphRepository(session).nodes_by_keys(brand_id, sorted(set(keys.values())))
    return {mid: nodes[key][1] for mid, key in keys.items() if key in nodes}


def person_by_member(session: Session, *, actor: Principal, member_id: int) -> Person:
    """The person of a member: its OneID's, or the member alone while it is not in the graph."""
    brand_id = actor.scope.require_brand()
    member = members.get_member(session, member_id)  # 404 for another brand's member
    oneid = _oneids_of_members(session, brand_id, [member]).get(member.id)
    if oneid is not None:
        return person_by_oneid(session, actor=actor, oneid=oneid)
    return Person(brand_id=brand_id, oneid=None, status=None, members=[member])


# -- search ----------------------------------------------------------------------------------------


def detect_type(q: str) -> str:
    """What a bare query most likely is: a phone, an e-mail, a number (OneID, or a numeric member
    number), a member number (letters then digits), else anything (name prefix or any identifier)."""
    compact = re.sub(r"[\s\-()]", "", q)
    if _PHONE.fullmatch(compact):
        return "phone"
    if "@" in q:
        return "email"
    if _DIGITS.fullmatch(q):
        return "oneid"
    if _MEMBER_NUMBER.fullmatch(q):
        return "member_number"
    return "any"


@dataclass
class _Hits:
    oneids: dict[int, str] = field(default_factory=dict)  # OneID → matched by
    members: dict[int, tuple[Member, str]] = field(default_factory=dict)  # member id → (member, by)

    def add_oneid(self, oneid: int, by: str) -> None:
        self.oneids.setdefault(oneid, by)

    def add_members(self, found: list[Member], by: str) -> None:
        for m in found:
            self.members.setdefault(m.id, (m, by))


def _find_nodes(
    session: Session, cfg: config.BrandConfig, types: list[str], value: str
) -> list[tuple[str, int]]:
    """``(type, OneID)`` of the identifiers among ``types`` holding ``value`` (junk values skipped)."""
    keys: dict[tuple[str, str], str] = {}
    for type_ in types:
        normalised, junk = cfg.book.check(type_, value)
        if junk is None:
            keys[(type_, blind_index(type_, normalised))] = type_
    found = IdentityGraphRepository(session).nodes_by_keys(cfg.brand_id, sorted(keys))
    return [(keys[k], v[1]) for k, v in found.items()]


def _member_list(session: Session, filters: MemberFilter, limit: int) -> list[Member]:
    return members.list_members(session, filters=filters, after_id=None, limit=limit)


def search(
    session: Session, *, actor: Principal, q: str, type_: str | None, limit: int = SEARCH_LIMIT
) -> SearchOut:
    """People matching ``q`` as ``type_`` (detected from ``q`` when not given), OneID first."""
    brand_id = actor.scope.require_brand()
    cfg = config.load(session, brand_id)
    q = q.strip()
    identifier_types = [t.code for t in cfg.book.ordered() if t.enabled]
    allowed = (*SEARCH_SPECIAL, *identifier_types)
    if type_ is not None and type_ not in allowed:
        raise ValidationFailed(
            f"Unknown search type '{type_}'.",
            errors=[field_error("type", "one of: " + ", ".join(allowed), "unknown-type")],
        )
    kind = type_ or detect_type(q)
    hits = _Hits()
    repo = MemberRepository(session)
    if kind == "oneid":
        if q.isdigit() and int(q) < 2**63:
            try:
                found_person = person_by_oneid(session, actor=actor, oneid=int(q))
            except NotFound:
                pass
            else:
                if found_person.oneid is not None:
                    hits.add_oneid(found_person.oneid, "oneid")
        if type_ is None:  # a bare number may also be a numeric member number
            found = repo.by_number(brand_id, q)
            hits.add_members([found] if found else [], "member_number")
    elif kind == "member_number":
        found = repo.by_number(brand_id, q)
        hits.add_members([found] if found else [], "member_number")
        for _t, oneid in _find_nodes(session, cfg, ["member_number"], q):
            hits.add_oneid(oneid, "member_number")
    elif kind == "name":
        hits.add_members(_member_list(session, MemberFilter(q=q), limit), "name")
    elif kind == "any":
        hits.add_members(_member_list(session, MemberFilter(q=q), limit), "name")
        hits.add_members(_member_list(session, MemberFilter(identifier_value=q), limit), "identifier")
        for t, oneid in _find_nodes(session, cfg, identifier_types, q):
            hits.add_oneid(oneid, t)
    else:  # one identifier type: phone, device_id, wechat_openid, wechat_unionid, email, user_id …
        if kind == "phone":
            _normalised, junk = cfg.book.check("phone", q)
            if junk is None:
                hits.add_members(_member_list(session, MemberFilter(phone=q), limit), "phone")
        elif kind in IDENTIFIER_TYPES:
            filters = MemberFilter(identifier_type=kind, identifier_value=q)
            hits.add_members(_member_list(session, filters, limit), kind)
        for t, oneid in _find_nodes(session, cfg, [kind], q):
            hits.add_oneid(oneid, t)
    return SearchOut(
        q=q, type=kind, detected=type_ is None, matches=_matches(session, actor, brand_id, hits, limit)
    )


def _brief(member: Member, show_pii: bool) -> MemberBrief:
    phone = pii.decrypt(member.phone_enc) if member.phone_enc else None
    return MemberBrief(
        id=member.id,
        member_number=member.member_number,
        name=member.name,
        status=member.status,
        phone=phone if show_pii or phone is None else pii.mask("phone", phone),
    )


def _matches(session: Session, actor: Principal, brand_id: int, hits: _Hits, limit: int) -> list[SearchMatch]:
    """One match per OneID (with its first member record), then members outside the graph."""
    show = actor.has("members:pii")
    found_members = [m for m, _by in hits.members.values()]
    member_oneid = _oneids_of_members(session, brand_id, found_members)
    by_oneid: dict[int, str] = dict(hits.oneids)
    for mid, (_m, by) in hits.members.items():
        if mid in member_oneid:
            by_oneid.setdefault(member_oneid[mid], by)
    # Members of the OneIDs found by identifier, in one query per OneID set.
    owners: dict[int, Member] = {}
    repo = IdentityGraphRepository(session)
    numbers: dict[str, int] = {}
    for node in repo.nodes_of(by_oneid):
        if node.type == "member_number":
            numbers.setdefault(_member_number_of(node), node.oneid)
    for m in ProfileRepository(session).members_by_number(brand_id, numbers):
        owners.setdefault(numbers[m.member_number], m)
    out = [
        SearchMatch(
            oneid=oneid, member=_brief(owners[oneid], show) if oneid in owners else None, matched_by=by
        )
        for oneid, by in by_oneid.items()
    ]
    out += [
        SearchMatch(oneid=None, member=_brief(m, show), matched_by=by)
        for mid, (m, by) in hits.members.items()
        if mid not in member_oneid
    ]
    return out[:limit]


# -- the profile -----------------------------------------------------------------------------------


def _graph(session: Session, person: OneIdOut) -> GraphOut:
    """Identifiers as nodes, links as edges; the other end of a removed or refused link may be an
    identifier of another OneID now (after a split): shown masked, as not the person's own."""
    nodes = {
        i.id: GraphNode(id=str(i.id), type=i.type, label=i.value, oneid=person.oneid, own=True)
        for i in person.identifiers
    }
    repo = IdentityGraphRepository(session)
    for link in person.links or []:
        for end in (link.left_id, link.right_id):
            if end not in nodes and (node := repo.node_by_id(end)) is not None:
                nodes[end] = GraphNode(
                    id=str(end), type=node.type, label=node.masked, oneid=node.oneid, own=False
                )
    edges = [
        GraphEdge(
            id=str(link.id),
            source=str(link.left_id),
            target=str(link.right_id),
            link_source=link.source,
            rule=link.rule,
            confidence=link.confidence,
            status=link.status,
        )
        for link in person.links or []
        if link.left_id in nodes and link.right_id in nodes
    ]
    categories = list(dict.fromkeys(n.type for n in nodes.values() if n.own))
    return GraphOut(categories=categories, nodes=list(nodes.values()), edges=edges)


def _identifiers(person: OneIdOut) -> list[ProfileIdentifier]:
    confidence: dict[int, float] = {}
    for link in person.links or []:
        if link.status == "active":
            for end in (link.left_id, link.right_id):
                confidence[end] = max(confidence.get(end, 0.0), link.confidence)
    return [
        ProfileIdentifier(
            id=i.id,
            type=i.type,
            value=i.value,
            source=i.source,
            confidence=confidence.get(i.id, 1.0),
            first_seen_at=i.first_seen_at,
            last_seen_at=i.last_seen_at,
        )
        for i in person.identifiers
    ]


def _loyalty(session: Session, actor: Principal, member: Member) -> LoyaltyOut:
    balances = points.member_summary(session, member.id).balances if actor.has("points:read") else None
    tier = None
    if actor.has("tiers:read") and (current := tiers.current_tier(session, member.id)) is not None:
        ladder = load_ladder(session, member.brand_id)
        level = ladder.by_id(current.level_id) if ladder is not None else None
        tier = TierOut(
            code=current.code,
            name_zh=level.name_zh if level else current.code,
            name_en=level.name_en if level else current.code,
            rank=current.rank,
            valid_until=current.valid_until,
        )
    plan = None
    if actor.has("paid:read") and (active := paid.active_plan(session, member.id, utcnow())) is not None:
        plan = PaidPlanOut(plan_code=active.plan_code, level_code=active.level_code, ends_at=active.ends_at)
    return LoyaltyOut(member_id=member.id, points=balances, tier=tier, paid_plan=plan)


def profile(session: Session, *, actor: Principal, person: Person) -> ProfileOut:
    """Record and identifiers, identity graph, loyalty, recent orders and salient features."""
    hidden: list[str] = []
    oneid_out = None
    if person.oneid is not None:
        row = IdentityGraphRepository(session).person(person.oneid)
        if row is None:
            raise NotFound(f"OneID {person.oneid} was not found.")
        oneid_out = identity.person_out(session, row, actor=actor, include_links=True)
    show_pii = actor.has("members:pii")
    loyalty = None
    if any(actor.has(p) for p in ("points:read", "tiers:read", "paid:read")):
        loyalty = [_loyalty(session, actor, m) for m in person.members]
    hidden += [
        s
        for s, p in (("points", "points:read"), ("tier", "tiers:read"), ("paid_plan", "paid:read"))
        if not actor.has(p)
    ]
    orders = features_out = None
    if actor.has("orders:read"):
        recent = [
            o for mid in person.member_ids for o in orders_for_member(session, mid, limit=RECENT_ORDERS)
        ]
        recent.sort(key=lambda o: (o.paid_at, o.id), reverse=True)
        orders = [order_summary(o) for o in recent[:RECENT_ORDERS]]
        features_out = features.salient(
            session,
            person.brand_id,
            member_ids=person.member_ids,
            user_ids=person.user_ids,
            anonymous_ids=person.anonymous_ids,
            include_events=actor.has("events:read"),
        )
    else:
        hidden += ["orders", "features"]
    return ProfileOut(
        oneid=person.oneid,
        requested_oneid=person.requested_oneid,
        status=person.status,
        members=members.to_out(session, person.members, show_pii=show_pii),
        identifiers=_identifiers(oneid_out) if oneid_out else [],
        golden=oneid_out.golden if oneid_out else {},
        graph=_graph(session, oneid_out) if oneid_out else GraphOut(categories=[], nodes=[], edges=[]),
        loyalty=loyalty,
        orders=orders,
        features=features_out,
        hidden=hidden,
    )


# -- the timeline ----------------------------------------------------------------------------------


def encode_cursor(item: TimelineItem) -> str:
    raw = json.dumps([item.at.isoformat(), KIND_RANK[item.kind], item.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Cursor | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode())
        at, rank, id_ = json.loads(raw)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not isinstance(rank, int) or not isinstance(id_, int):
            raise ValueError
        return Cursor(at=when, rank=rank, id=id_)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ValidationFailed("The cursor is not valid.", errors=[field_error("before", "malformed cursor")])


def parse_kinds(actor: Principal, kinds: str | None) -> list[TimelineKind]:
    """The kinds asked for (comma separated), each checked against its permission; by default every
    kind the caller may read."""
    if not kinds or not kinds.strip():
        return [k for k in TIMELINE_KINDS if actor.has(KIND_PERMISSION[k])]
    asked: list[TimelineKind] = []
    for part in kinds.split(","):
        name = part.strip()
        kind = next((k for k in TIMELINE_KINDS if k == name), None)
        if kind is None:
            raise ValidationFailed(
                f"Unknown timeline kind '{name}'.",
                errors=[field_error("kinds", "one of: " + ", ".join(TIMELINE_KINDS), "unknown-kind")],
            )
        actor.require(KIND_PERMISSION[kind])
        if kind not in asked:
            asked.append(kind)
    return asked


def _event_items(
    repo: ProfileRepository, person: Person, cursor: Cursor | None, limit: int
) -> list[TimelineItem]:
    rows = repo.events(
        user_ids=person.user_ids,
        anonymous_ids=person.anonymous_ids,
        cursor=cursor,
        rank=KIND_RANK["event"],
        limit=limit,
    )
    return [
        TimelineItem(
            kind="event",
            id=e.id,
            at=e.timestamp,
            title=e.event or e.type,
            subtype=e.type,
            detail={"properties": e.properties or {}, "signed_in": e.user_id is not None},
        )
        for e in rows
    ]


def _order_items(
    repo: ProfileRepository, person: Person, cursor: Cursor | None, limit: int
) -> list[TimelineItem]:
    rows = repo.orders(person.member_ids, cursor=cursor, rank=KIND_RANK["order"], limit=limit)
    return [
        TimelineItem(
            kind="order",
            id=o.id,
            at=o.paid_at,
            member_id=o.member_id,
            title=o.order_number,
            subtype=o.channel,
            amount=o.paid_amount,
            detail={
                "status": o.status,
                "store_id": o.store_id,
                "units": o.units,
                "refunded_amount": str(o.refunded_amount),
            },
        )
        for o in rows
    ]


def _points_items(
    repo: ProfileRepository, person: Person, cursor: Cursor | None, limit: int
) -> list[TimelineItem]:
    rows = repo.point_entries(person.member_ids, cursor=cursor, rank=KIND_RANK["points"], limit=limit)
    return [
        TimelineItem(
            kind="points",
            id=e.id,
            at=e.occurred_at,
            member_id=e.member_id,
            title=code,
            subtype=e.kind,
            amount=Decimal(e.amount),
            detail={"reason": e.reason, "source_type": e.source_type, "source_id": e.source_id},
        )
        for e, code in rows
    ]


def _coupon_items(
    repo: ProfileRepository, person: Person, cursor: Cursor | None, limit: int
) -> list[TimelineItem]:
    rows = repo.coupon_events(person.member_ids, cursor=cursor, rank=KIND_RANK["coupon"], limit=limit)
    return [
        TimelineItem(
            kind="coupon",
            id=e.id,
            at=e.occurred_at,
            member_id=c.member_id,
            title=t.name,
            subtype=e.kind,
            amount=e.amount,
            detail={"coupon_id": c.id, "template_code": t.code},
        )
        for e, c, t in rows
    ]


_SOURCES = {"event": _event_items, "order": _order_items, "points": _points_items, "coupon": _coupon_items}


def timeline(
    session: Session,
    *,
    actor: Principal,
    person: Person,
    kinds: list[TimelineKind],
    before: str | None,
    limit: int,
) -> TimelinePage:
    """The person's events, orders, ledger lines and coupon events merged newest first.

    Each source is read as a keyset page of ``limit + 1`` rows below the cursor, ordered by its time
    and id; the merge orders by (time, kind rank, id) descending, a total order, so a page never
    repeats or skips a row. The cursor is the last item's (time, kind rank, id)."""
    if not 1 <= limit <= TIMELINE_MAX:
        raise ValidationFailed(
            f"limit must be between 1 and {TIMELINE_MAX}.",
            errors=[field_error("limit", f"must be between 1 and {TIMELINE_MAX}", "out-of-range")],
        )
    cursor = decode_cursor(before)
    repo = ProfileRepository(session)
    items: list[TimelineItem] = []
    for kind in kinds:
        items += _SOURCES[kind](repo, person, cursor, limit + 1)
    items.sort(key=lambda i: (i.at, KIND_RANK[i.kind], i.id), reverse=True)
    shown = items[:limit]
    more = len(items) > limit
    return TimelinePage(
        items=shown,
        next_cursor=encode_cursor(shown[-1]) if more and shown else None,
        kinds=kinds,
        limit=limit,
    )
