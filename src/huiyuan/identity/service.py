"""OneID business verbs and reads: resolve one and many, the change feed, manual link and unlink,
conflicts, settings and match proposals. Verbs audit in the caller's transaction and never commit.

Identifier values leave only masked unless the caller holds ``members:pii``; audit rows keep
masked values only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.identity import config
from huiyuan.identity.linking import PII_ATTRIBUTES, Ident, LinkResult
from huiyuan.identity.models import IdentifierNode, IdentityConflict, IdentityLink, MatchProposal, OneIdPerson
from huiyuan.identity.repository import IdentityGraphRepository
from huiyuan.identity.rules import DEFAULT_TYPES, blind_index, display
from huiyuan.identity.schemas import (
    ChangeFeed,
    ChangeOut,
    ConflictResolve,
    IdentifierIn,
    IdentifierOut,
    LinkIn,
    LinkOut,
    MergeIn,
    OneIdOut,
    PersonRef,
    ResolveBatchIn,
    ResolveBatchOut,
    ResolvedItem,
    SettingsIn,
    SettingsOut,
    SurvivorOut,
    TypeOut,
)
from huiyuan.identity.survivorship import Seen, golden_record
from huiyuan.kit import pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.pagination import decode_cursor, encode_cursor
from huiyuan.kit.scope import Principal


class IdentifierRefused(ValidationFailed):
    code = "identifier-refused"
    title = "This value cannot be an identifier"


class LinkConflict(Conflict):
    code = "oneid-conflict"
    title = "The link was refused and recorded as a conflict"


class ConflictNotAcceptable(Conflict):
    code = "conflict-not-acceptable"
    title = "This conflict cannot be accepted"


def _show_pii(actor: Principal) -> bool:
    return actor.has("members:pii")


# -- reads -----------------------------------------------------------------------------------------


def _identifier_out(node: IdentifierNode, book: Any, show_pii: bool) -> IdentifierOut:
    value = node.masked
    if show_pii and node.value_enc:
        value = display(book, node.type, pii.decrypt(node.value_enc), show_pii=True)
    return IdentifierOut(
        id=node.id,
        type=node.type,
        value=value,
        source=node.source,
        first_seen_at=node.first_seen_at,
        last_seen_at=node.last_seen_at,
    )


def _ordered(nodes: Sequence[IdentifierNode], book: Any) -> list[IdentifierNode]:
    return sorted(nodes, key=lambda n: (book.priority(n.type), n.id))


def golden_of(
    session: Session, cfg: config.BrandConfig, nodes: Sequence[IdentifierNode], show_pii: bool
) -> dict[str, SurvivorOut]:
    seen = []
    for o in IdentityGraphRepository(session).observations_of([n.id for n in nodes]):
        value = json.loads(pii.decrypt(o.value_enc)) if o.value_enc else o.value
        seen.append(Seen(o.attribute, value, o.source, o.first_seen_at, o.observed_at, o.node_id))
    out: dict[str, SurvivorOut] = {}
    for attribute, s in golden_record(seen, rules=cfg.survivorship, source_trust=cfg.source_trust).items():
        value = s.value
        if attribute in PII_ATTRIBUTES and not show_pii and isinstance(value, str):
            value = pii.mask(attribute if attribute in ("phone", "email") else "text", value)
        out[attribute] = SurvivorOut(value=value, rule=s.rule, source=s.source, observed_at=s.observed_at)
    return out


def person_out(
    session: Session,
    person: OneIdPerson,
    *,
    actor: Principal,
    include_links: bool = False,
    cfg: config.BrandConfig | None = None,
) -> OneIdOut:
    """The OneID with its identifiers (strongest first), golden record and, if asked, its links."""
    cfg = cfg or config.load(session, person.brand_id)
    repo = IdentityGraphRepository(session)
    nodes = _ordered(repo.nodes_of([person.id]), cfg.book)
    show = _show_pii(actor)
    links = None
    if include_links:
        links = [
            LinkOut.model_validate(link, from_attributes=True)
            for link in repo.links_touching([n.id for n in nodes], status=None)
        ]
    return OneIdOut(
        oneid=person.id,
        status=person.status,
        merged_into=person.merged_into,
        identifiers=[_identifier_out(n, cfg.book, show) for n in nodes],
        golden=golden_of(session, cfg, nodes, show),
        links=links,
    )


def _node_for(
    session: Session, brand_id: int, cfg: config.BrandConfig, type_: str, value: str
) -> IdentifierNode:
    normalised, junk = cfg.book.check(type_, value)
    if junk is not None:
        raise IdentifierRefused(
            f"'{type_}' values like this are not identifiers ({junk}).",
            errors=[field_error("value", junk, junk)],
        )
    node = IdentityGraphRepository(session).node(brand_id, type_, blind_index(type_, normalised))
    if node is None:
        raise NotFound(f"No OneID holds this {type_}.")
    return node


def resolve(
    session: Session, *, actor: Principal, type_: str, value: str, include_links: bool = False
) -> OneIdOut:
    """The OneID holding this identifier, with all its identifiers; 404 if none does."""
    brand_id = actor.scope.require_brand()
    cfg = config.load(session, brand_id)
    node = _node_for(session, brand_id, cfg, type_, value)
    return get_person(session, actor=actor, oneid=node.oneid, include_links=include_links, cfg=cfg)


def get_person(
    session: Session,
    *,
    actor: Principal,
    oneid: int,
    include_links: bool = False,
    cfg: config.BrandConfig | None = None,
) -> OneIdOut:
    """A OneID by its number (a retired one says which OneID it was merged into)."""
    brand_id = actor.scope.require_brand()
    person = IdentityGraphRepository(session).person(oneid)
    if person is None or person.brand_id != brand_id:
        raise NotFound(f"OneID {oneid} was not found.")
    return person_out(session, person, actor=actor, include_links=include_links, cfg=cfg)


def resolve_batch(session: Session, *, actor: Principal, data: ResolveBatchIn) -> ResolveBatchOut:
    """OneIDs of up to 10,000 identifiers in one round trip (input order kept)."""
    brand_id = actor.scope.require_brand()
    cfg = config.load(session, brand_id)
    repo = IdentityGraphRepository(session)
    keys: list[tuple[str, str] | None] = []
    errors: list[str | None] = []
    for ident in data.identifiers:
        normalised, junk = cfg.book.check(ident.type, ident.value)
        keys.append(None if junk else (ident.type, blind_index(ident.type, normalised)))
        errors.append(junk)
    found = repo.nodes_by_keys(brand_id, sorted({k for k in keys if k is not None}))
    members: dict[int, list[IdentifierOut]] = {}
    if data.expand:
        show = _show_pii(actor)
        for node in _ordered(repo.nodes_of(v[1] for v in found.values()), cfg.book):
            members.setdefault(node.oneid, []).append(_identifier_out(node, cfg.book, show))
    items = []
    for i, (key, error) in enumerate(zip(keys, errors, strict=True)):
        hit = found.get(key) if key is not None else None
        oneid = hit[1] if hit else None
        items.append(
            ResolvedItem(
                index=i,
                oneid=oneid,
                error=error or (None if hit else "unknown-identifier"),
                identifiers=members.get(oneid, []) if data.expand and oneid else None,
            )
        )
    return ResolveBatchOut(items=items, found=sum(1 for i in items if i.oneid is not None))


def change_feed(session: Session, *, actor: Principal, cursor: str | None, limit: int) -> ChangeFeed:
    """Merges and splits after ``cursor``, oldest first."""
    actor.scope.require_brand()
    after = decode_cursor(cursor) or 0
    rows = IdentityGraphRepository(session).changes(after_id=after, limit=limit)
    shown = rows[:limit]
    last = shown[-1].id if shown else after
    return ChangeFeed(
        items=[ChangeOut.model_validate(r) for r in shown],
        cursor=encode_cursor(last),
        has_more=len(rows) > limit,
    )


def history(session: Session, *, actor: Principal, oneid: int) -> list[ChangeOut]:
    """Every merge and split that named this OneID, newest first."""
    get_person(session, actor=actor, oneid=oneid)
    return [ChangeOut.model_validate(c) for c in IdentityGraphRepository(session).history(oneid)]


# -- manual link and unlink ------------------------------------------------------------------------


def _ident(data: IdentifierIn) -> Ident:
    return Ident(type=data.type, value=data.value)


def link_manually(session: Session, *, actor: Principal, data: LinkIn) -> LinkResult:
    """Link two identifiers by hand (audited). A refused link is recorded as a conflict and answered
    409 by the API, with the conflict committed."""
    brand_id = actor.scope.require_brand()
    writer = config.writer(session, brand_id, actor.label)
    result = writer.link(
        _ident(data.left), _ident(data.right), source="manual", rule="manual", confidence=1.0
    )
    if result.status == "junk":
        raise IdentifierRefused(
            f"One of the identifiers is not usable ({result.reason}).",
            errors=[field_error("left/right", result.reason or "refused", result.reason or "refused")],
        )
    audit.record(
        session,
        actor=actor,
        action="oneid.linked",
        entity_type="oneid",
        entity_id=result.oneid,
        brand_id=brand_id,
        after={
            "status": result.status,
            "link_id": result.link_id,
            "left_type": data.left.type,
            "right_type": data.right.type,
            "conflict_id": result.conflict_id,
        },
        note=data.reason,
    )
    return result


MERGE_RULE = "manual-merge"
MAX_MERGE_HOPS = 20


def _node_of_ref(session: Session, brand_id: int, cfg: config.BrandConfig, ref: PersonRef) -> IdentifierNode:
    """The identifier a manual merge links for one side: the one named, or the strongest (then
    oldest) identifier of the OneID named — a retired OneID stands for the one it was merged into."""
    if ref.oneid is None:
        assert ref.type is not None and ref.value is not None  # PersonRef's validator
        return _node_for(session, brand_id, cfg, ref.type, ref.value)
    repo = IdentityGraphRepository(session)
    oneid = ref.oneid
    for _ in range(MAX_MERGE_HOPS):
        person = repo.person(oneid)
        if person is None or person.brand_id != brand_id:
            break
        if person.status == "retired" and person.merged_into is not None:
            oneid = person.merged_into
            continue
        nodes = _ordered(repo.nodes_of([oneid]), cfg.book)
        if nodes:
            return nodes[0]
        break
    raise NotFound(f"OneID {ref.oneid} was not found.")


def _ref_for_audit(ref: PersonRef) -> dict[str, Any]:
    # The identifier's value stays out of the audit trail (it may be personal data).
    return {"oneid": ref.oneid} if ref.oneid is not None else {"type": ref.type}


def merge_manually(session: Session, *, actor: Principal, data: MergeIn) -> tuple[LinkResult, list[int]]:
    """Merge two people by hand (each named by an identifier or a OneID) with a manual link, through
    the same guards as every link (blocked pairs, member clash, per-type limits): a refused merge is
    recorded as a conflict carrying the operator and the reason, and answered 409 by the API with
    the conflict committed. Audited with the reason. Returns the result and the two OneIDs before."""
    brand_id = actor.scope.require_brand()
    cfg = config.load(session, brand_id)
    left = _node_of_ref(session, brand_id, cfg, data.left)
    right = _node_of_ref(session, brand_id, cfg, data.right)
    before = sorted({left.oneid, right.oneid})
    if left.oneid == right.oneid:
        result = LinkResult("same", oneid=left.oneid)
    else:
        writer = config.writer(session, brand_id, actor.label)
        result = writer.link_nodes(left, right, source="manual", rule=MERGE_RULE, confidence=1.0)
    if result.conflict_id is not None:
        conflict = session.get(IdentityConflict, result.conflict_id)
        if conflict is not None:
            conflict.detail = {**conflict.detail, "by": actor.label[:200], "note": data.reason}
    audit.record(
        session,
        actor=actor,
        action="oneid.merged_manually",
        entity_type="oneid",
        entity_id=result.oneid,
        brand_id=brand_id,
        before={"oneids": before},
        after={
            "status": result.status,
            "link_id": result.link_id,
            "conflict_id": result.conflict_id,
            "left": _ref_for_audit(data.left),
            "right": _ref_for_audit(data.right),
        },
        note=data.reason,
    )
    return result, before


def _link_of_brand(session: Session, brand_id: int, link_id: int) -> IdentityLink:
    link = IdentityGraphRepository(session).link_by_id(link_id)
    if link is None or link.brand_id != brand_id:
        raise NotFound(f"Link {link_id} was not found.")
    return link


def unlink(
    session: Session, *, actor: Principal, link_id: int, reason: str
) -> tuple[list[int], list[tuple[int, list[int]]]]:
    """Remove a link and every other link between the same two identifiers (un-merge), block the
    pair against automatic re-linking, and split the OneID if nothing else holds it together."""
    brand_id = actor.scope.require_brand()
    link = _link_of_brand(session, brand_id, link_id)
    writer = config.writer(session, brand_id, actor.label)
    pair = writer.repo.pair_links(link.left_id, link.right_id)
    splits = writer.remove_links(pair, reason=reason, block=True)
    audit.record(
        session,
        actor=actor,
        action="oneid.unlinked",
        entity_type="oneid_link",
        entity_id=link.id,
        brand_id=brand_id,
        before={"status": "active"},
        after={
            "status": "removed",
            "links": [p.id for p in pair],
            "splits": [[s, parts] for s, parts in splits],
        },
        note=reason,
    )
    return [p.id for p in pair], splits


def resolve_conflict(session: Session, *, actor: Principal, data: ConflictResolve) -> IdentityConflict:
    """Accept a refused link (link it despite the limit) or dismiss the conflict."""
    brand_id = actor.scope.require_brand()
    repo = IdentityGraphRepository(session)
    conflict = repo.conflict(data.conflict_id)
    if conflict is None or conflict.brand_id != brand_id:
        raise NotFound(f"Conflict {data.conflict_id} was not found.")
    if conflict.status != "open":
        raise Conflict(f"Conflict {conflict.id} is already {conflict.status}.")
    if data.action == "accept":
        if conflict.reason == "member-clash" or conflict.link_id is None:
            raise ConflictNotAcceptable(
                "Two member records cannot become one person here; merge the members first."
                if conflict.reason == "member-clash"
                else "Only a refused link can be accepted."
            )
        link = _link_of_brand(session, brand_id, conflict.link_id)
        writer = config.writer(session, brand_id, actor.label)
        left, right = repo.node_by_id(link.left_id), repo.node_by_id(link.right_id)
        assert left is not None and right is not None
        writer.link_nodes(
            left, right, source=link.source, rule=link.rule, confidence=link.confidence, force=True
        )
    conflict.status = "accepted" if data.action == "accept" else "dismissed"
    conflict.resolved_at = utcnow()
    conflict.resolved_by = actor.label[:200]
    conflict.note = data.note
    audit.record(
        session,
        actor=actor,
        action=f"oneid.conflict_{conflict.status}",
        entity_type="oneid_conflict",
        entity_id=conflict.id,
        brand_id=brand_id,
        before={"status": "open"},
        after={"status": conflict.status},
        note=data.note,
    )
    return conflict


# -- settings --------------------------------------------------------------------------------------


def settings_out(cfg: config.BrandConfig) -> SettingsOut:
    return SettingsOut(
        types=[TypeOut(**t.as_dict()) for t in cfg.book.ordered()],
        source_trust=list(cfg.source_trust),
        survivorship=dict(sorted(cfg.survivorship.items())),
        auto_link_threshold=cfg.auto_link_threshold,
        review_threshold=cfg.review_threshold,
    )


def get_settings(session: Session, *, actor: Principal) -> SettingsOut:
    return settings_out(config.load(session, actor.scope.require_brand()))


def update_settings(session: Session, *, actor: Principal, data: SettingsIn) -> SettingsOut:
    """Change identifier types, source trust, survivorship rules or thresholds (audited). Limits
    apply to links made from now on; a recompute flags OneIDs already over a new limit."""
    brand_id = actor.scope.require_brand()
    row = config.settings_row(session, brand_id)
    before = {"types": row.types, "source_trust": row.source_trust, "survivorship": row.survivorship}
    if data.types is not None:
        types = dict(row.types or {})
        known = {t.code for t in DEFAULT_TYPES}
        for code, change in data.types.items():
            values = change.model_dump(exclude_none=True, exclude={"unlimited"})
            if change.unlimited:
                values["max_per_person"] = None
            if code not in known and code not in types and "priority" not in values:
                raise ValidationFailed(
                    f"A new identifier type '{code}' needs a priority.",
                    errors=[field_error(f"types.{code}.priority", "required for a new type", "missing")],
                )
            types[code] = {**types.get(code, {}), **values}
        row.types = types
    if data.source_trust is not None:
        row.source_trust = list(dict.fromkeys(data.source_trust))
    if data.survivorship is not None:
        row.survivorship = {**(row.survivorship or {}), **data.survivorship}
    if data.auto_link_threshold is not None:
        row.auto_link_threshold = data.auto_link_threshold
    if data.review_threshold is not None:
        row.review_threshold = data.review_threshold
    if row.review_threshold > row.auto_link_threshold:
        raise ValidationFailed(
            "review_threshold must not exceed auto_link_threshold.",
            errors=[field_error("review_threshold", "above auto_link_threshold", "out-of-range")],
        )
    row.updated_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="oneid.settings_changed",
        entity_type="oneid_settings",
        entity_id=brand_id,
        brand_id=brand_id,
        before=before,
        after={"types": row.types, "source_trust": row.source_trust, "survivorship": row.survivorship},
    )
    return settings_out(config.load(session, brand_id))


# -- match proposals -------------------------------------------------------------------------------


def decide_proposal(session: Session, *, actor: Principal, proposal_id: int, accept: bool) -> MatchProposal:
    """Accept (link; limits apply) or reject a probabilistic match waiting for review (audited)."""
    from huiyuan.identity import matching

    brand_id = actor.scope.require_brand()
    proposal = IdentityGraphRepository(session).proposal(proposal_id)
    if proposal is None or proposal.brand_id != brand_id:
        raise NotFound(f"Proposal {proposal_id} was not found.")
    before = proposal.status
    matching.decide(config.writer(session, brand_id, actor.label), proposal, accept=accept)
    audit.record(
        session,
        actor=actor,
        action="oneid.proposal_decided",
        entity_type="oneid_proposal",
        entity_id=proposal.id,
        brand_id=brand_id,
        before={"status": before},
        after={"status": proposal.status},
    )
    return proposal
