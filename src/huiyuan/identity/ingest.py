"""Where links come from: member records, orders and identify/alias/track calls, each turned into
links through ``linking.GraphWriter`` (limits and conflicts apply).

* **Member records** (``sync_member``): the member number is linked to every identifier the member
  holds in ``member_identifiers`` (phone, e-mail, OpenID, card number …), reusing their blind
  indexes and Fernet tokens rather than copying values; links the record no longer supports are
  removed (which may split the OneID); name, gender, birthday … are observed for survivorship.
* **Orders** (``link_order``): the buyer's member number and the anonymous identifiers given at
  checkout (blind indexes only) are linked to each other.
* **Identify, alias and track calls** (``link_identity_calls``): the input interface of event
  collection. It takes rows shaped like the Segment spec (``type``, ``userId``, ``anonymousId``,
  ``previousId``, ``context.externalIds``, ``traits``) — exactly what
  ``events.service.identity_calls(session, after_id, limit)`` returns — and links every identifier
  of a call to its strongest one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.identity.linking import GraphWriter, Ident, LinkResult
from huiyuan.identity.models import Observation
from huiyuan.identity.rules import blind_index
from huiyuan.kit import pii
from huiyuan.members.models import Member, MemberIdentifier
from huiyuan.orders.models import Order

# Orders read by one statement of ``orders_without_identifiers`` (bound parameters stay well
# under every backend's limit).
ORDER_CHUNK = 900
MEMBER_ATTRIBUTES = ("name", "gender", "birthday", "province", "city", "interests")
# Traits of identify calls that are identifiers, by the spellings SDKs use.
TRAIT_IDENTIFIERS = {
    "phone": "phone",
    "mobile": "phone",
    "email": "email",
    "memberNumber": "member_number",
    "member_number": "member_number",
    "unionId": "wechat_unionid",
    "unionid": "wechat_unionid",
    "openId": "wechat_openid",
    "openid": "wechat_openid",
}
TRAIT_ATTRIBUTES = {
    "name": "name",
    "gender": "gender",
    "birthday": "birthday",
    "address": "address",
    "city": "city",
    "province": "province",
    "phone": "phone",
    "email": "email",
}
EXTERNAL_ID_TYPES = {
    "wechat_openid": "wechat_openid",
    "openid": "wechat_openid",
    "wechat_unionid": "wechat_unionid",
    "unionid": "wechat_unionid",
    "alipay_id": "alipay_id",
    "device_id": "device_id",
    "phone": "phone",
    "email": "email",
    "member_number": "member_number",
    "card_number": "card_number",
}


@dataclass
class IngestStats:
    calls: int = 0
    links: int = 0
    merged: int = 0
    conflicts: int = 0
    refused_values: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, result: LinkResult) -> None:
        self.links += 1
        self.outcomes[result.status] = self.outcomes.get(result.status, 0) + 1
        if result.status == "merged":
            self.merged += 1
        elif result.status == "conflict":
            self.conflicts += 1
        elif result.status == "junk":
            self.refused_values += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "links": self.links,
            "merged": self.merged,
            "conflicts": self.conflicts,
            "refused_values": self.refused_values,
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def star(
    writer: GraphWriter,
    idents: Sequence[Ident],
    *,
    source: str,
    rule: str,
    confidence: float,
    stats: IngestStats | None = None,
) -> Ident | None:
    """Link every identifier to the strongest usable one (by type priority); returns that hub."""
    usable = [i for i in idents if not isinstance(writer.key(i), str)]
    if stats is not None:
        stats.refused_values += len(idents) - len(usable)
    if not usable:
        return None
    usable.sort(key=lambda i: writer.book.priority(i.type))
    hub, rest = usable[0], usable[1:]
    if not rest:
        writer.ensure(hub, source=source)
    seen = {(hub.type, hub.value, hub.bidx)}
    for other in rest:
        if (other.type, other.value, other.bidx) in seen:
            continue
        seen.add((other.type, other.value, other.bidx))
        result = writer.link(
            hub, other, source=source, rule=f"{rule}.{hub.type}-{other.type}"[:60], confidence=confidence
        )
        if stats is not None:
            stats.add(result)
    return hub


# -- member records --------------------------------------------------------------------------------


def _member_ident(member: Member) -> Ident:
    return Ident(type="member_number", value=member.member_number)


def sync_member(writer: GraphWriter, member: Member, identifiers: Iterable[MemberIdentifier]) -> None:
    """Make the graph agree with a member record: its number linked to each of its identifiers."""
    hub_key = writer.key(_member_ident(member))
    if isinstance(hub_key, str):
        return
    if member.erased_at is not None:
        forget_member(writer, member)
        return
    wanted = [
        Ident(type=i.type, bidx=i.value_bidx, value_enc=i.value_enc)
        for i in identifiers
        if writer.book.get(i.type) is not None
    ]
    hub = writer.ensure(_member_ident(member), source="member")
    if hub is None:
        return
    keep: set[int] = set()
    for ident in wanted:
        result = writer.link(
            _member_ident(member), ident, source="member", rule=f"member.{ident.type}", confidence=1.0
        )
        other = writer.find(writer.key(ident))  # type: ignore[arg-type]
        if other is not None and result.status != "junk":
            keep.add(other.id)
    stale = [
        link
        for link in writer.repo.links_touching([hub.id])
        if link.source == "member" and (link.right_id if link.left_id == hub.id else link.left_id) not in keep
    ]
    if stale:
        writer.remove_links(stale, reason="no longer on the member record", block=False, cause="member")
    writer.observe(hub, _member_attributes(member), source="member", at=member.updated_at)


def _member_attributes(member: Member) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in MEMBER_ATTRIBUTES:
        value = getattr(member, name)
        if isinstance(value, date):
            value = value.isoformat()
        if name == "gender" and value == "unknown":
            value = None
        out[name] = value
    if member.phone_enc:
        out["phone"] = pii.decrypt(member.phone_enc)
    if member.email_enc:
        out["email"] = pii.decrypt(member.email_enc)
    return out


def forget_member(writer: GraphWriter, member: Member) -> None:
    """An erased member: its links from the record go, and so do the values and observations the
    graph kept of the identifiers the record linked (the identifiers themselves stay as keys)."""
    hub = writer.find(writer.key(_member_ident(member)))  # type: ignore[arg-type]
    if hub is None:
        return
    links = [link for link in writer.repo.links_touching([hub.id], status=None) if link.source == "member"]
    node_ids = {hub.id} | {link.left_id for link in links} | {link.right_id for link in links}
    writer.remove_links(
        [link for link in links if link.status == "active"],
        reason="member erased",
        block=False,
        cause="member",
    )
    for node_id in sorted(node_ids):
        node = writer.repo.node_by_id(node_id)
        if node is not None and node.type != "member_number":
            node.value_enc = None
            node.masked = "****"  # a mask still shows part of the value
    stmt = select(Observation).where(Observation.node_id.in_(sorted(node_ids)))
    for row in writer.session.scalars(stmt):
        writer.session.delete(row)


def sync_member_by_id(writer: GraphWriter, session: Session, member_id: int) -> bool:
    member = session.scalars(select(Member).where(Member.id == member_id)).one_or_none()
    if member is None:
        return False
    identifiers = session.scalars(
        select(MemberIdentifier).where(MemberIdentifier.member_id == member.id).order_by(MemberIdentifier.id)
    )
    sync_member(writer, member, list(identifiers))
    return True


# -- orders ----------------------------------------------------------------------------------------


def link_order(writer_for: Callable[[], GraphWriter], session: Session, order_id: int) -> IngestStats:
    """Link an order's member number and the identifiers given at checkout (blind indexes). The
    writer is only made (settings read) when the order has checkout identifiers."""
    stats = IngestStats()
    row = session.execute(
        select(Order.member_id, Order.anonymous_identifiers).where(Order.id == order_id)
    ).one_or_none()
    if row is None:
        return stats
    member_id, anonymous = row
    idents = _checkout_idents(anonymous)
    if not idents:
        return stats  # a member's order without checkout identifiers teaches the graph nothing
    if member_id is not None:
        number = session.scalar(select(Member.member_number).where(Member.id == member_id))
        if number:
            idents.insert(0, Ident(type="member_number", value=number))
    stats.calls = 1
    writer = writer_for()
    star(writer, idents, source="order", rule="order", confidence=0.9, stats=stats)
    return stats


def orders_without_identifiers(session: Session, order_ids: Sequence[int]) -> set[int]:
    """The orders among ``order_ids`` that ``link_order`` has nothing to link for (no checkout
    identifiers, or no such order in scope): one query per ``ORDER_CHUNK`` orders."""
    wanted = list(dict.fromkeys(order_ids))
    idle = set(wanted)
    for start in range(0, len(wanted), ORDER_CHUNK):
        chunk = wanted[start : start + ORDER_CHUNK]
        for order_id, anonymous in session.execute(
            select(Order.id, Order.anonymous_identifiers).where(Order.id.in_(chunk))
        ):
            if _checkout_idents(anonymous):
                idle.discard(order_id)
    return idle


def _checkout_idents(anonymous: Any) -> list[Ident]:
    return [
        Ident(type=str(i.get("type")), bidx=str(i.get("bidx") or ""), masked=i.get("masked"))
        for i in (anonymous or [])
        if isinstance(i, Mapping)
    ]


# -- identify / alias / track calls ----------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text or None


def call_identifiers(call: Mapping[str, Any]) -> list[Ident]:
    """Every identifier a call names: userId, anonymousId, previousId (alias), externalIds, traits."""
    out: list[Ident] = []
    context = call.get("context") if isinstance(call.get("context"), Mapping) else {}
    traits = call.get("traits") if isinstance(call.get("traits"), Mapping) else {}
    if not traits and isinstance(context, Mapping) and isinstance(context.get("traits"), Mapping):
        traits = context["traits"]
    if (v := _text(call.get("userId"))) is not None:
        out.append(Ident("user_id", v))
    if (v := _text(call.get("anonymousId"))) is not None:
        out.append(Ident("anonymous_id", v))
    if call.get("type") == "alias" and (v := _text(call.get("previousId"))) is not None:
        out.append(Ident(str(call.get("previousIdType") or "anonymous_id"), v))
    externals = context.get("externalIds") if isinstance(context, Mapping) else None
    for ext in externals if isinstance(externals, list) else []:
        if not isinstance(ext, Mapping) or (v := _text(ext.get("id"))) is None:
            continue
        kind = str(ext.get("type") or "").strip()
        mapped = EXTERNAL_ID_TYPES.get(kind.lower())
        out.append(Ident(mapped, v) if mapped else Ident("external_id", f"{kind}:{v}"))
    for trait, type_ in TRAIT_IDENTIFIERS.items():
        if isinstance(traits, Mapping) and (v := _text(traits.get(trait))) is not None:
            out.append(Ident(type_, v))
    return out


def _call_attributes(call: Mapping[str, Any]) -> dict[str, Any]:
    traits = call.get("traits")
    if not isinstance(traits, Mapping):
        context = call.get("context")
        traits = context.get("traits") if isinstance(context, Mapping) else None
    if not isinstance(traits, Mapping):
        return {}
    out: dict[str, Any] = {}
    for trait, attribute in TRAIT_ATTRIBUTES.items():
        value = traits.get(trait)
        if isinstance(value, Mapping):  # Segment's address is an object
            value = ", ".join(str(v) for v in value.values() if v)
        if value not in (None, ""):
            out[attribute] = value if isinstance(value, (str, int, float)) else str(value)
    return out


def _when(call: Mapping[str, Any]) -> datetime | None:
    value = call.get("timestamp")
    if isinstance(value, datetime):
        return value if value.tzinfo else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else None
    return None


def as_call(row: Any) -> Mapping[str, Any]:
    """A call in the Segment shape: mappings pass through; objects with the attributes of
    ``events.service.IdentityCall`` (``user_id``, ``anonymous_id``, ``previous_id``,
    ``external_ids``, ``traits``, ``timestamp``) are translated."""
    if isinstance(row, Mapping):
        return row
    return {
        "id": getattr(row, "id", None),
        "type": getattr(row, "type", None),
        "userId": getattr(row, "user_id", None),
        "anonymousId": getattr(row, "anonymous_id", None),
        "previousId": getattr(row, "previous_id", None),
        "context": {"externalIds": list(getattr(row, "external_ids", None) or [])},
        "traits": dict(getattr(row, "traits", None) or {}),
        "timestamp": getattr(row, "timestamp", None),
    }


def link_identity_calls(writer: GraphWriter, calls: Iterable[Any]) -> IngestStats:
    """Link the identifiers of identify/alias/track calls: Segment-shaped mappings or
    ``events.service.IdentityCall`` rows (``as_call``)."""
    stats = IngestStats()
    for row in calls:
        call = as_call(row)
        stats.calls += 1
        kind = str(call.get("type") or "track")
        source = "alias" if kind == "alias" else "identify"
        hub = star(
            writer,
            call_identifiers(call),
            source=source,
            rule=kind,
            confidence=1.0 if kind != "track" else 0.95,
            stats=stats,
        )
        attributes = _call_attributes(call) if kind == "identify" else {}
        if hub is not None and attributes:
            key = writer.key(hub)
            node = writer.find(key) if not isinstance(key, str) else None
            if node is not None:
                writer.observe(node, attributes, source="identify", at=_when(call))
    return stats


def ident_key(writer: GraphWriter, type_: str, value: str) -> tuple[str, str] | None:
    """``(type, blind index)`` of a raw value under the brand's rules, or None if refused."""
    normalised, junk = writer.book.check(type_, value)
    return None if junk else (type_, blind_index(type_, normalised))
