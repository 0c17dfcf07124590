"""The OneID console's manual merge in both languages: two people merged by OneID number and by
identifier (reason required, audited, the merged OneID shown with the merge in its history), a merge
over a per-type limit shown as the conflict it was recorded as, bad input kept in the form, read-only
roles without the form and refused on post, and another brand's OneID not found."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.identity.models import IdentityConflict, IdentityLink
from tests.conftest import World
from tests.console.conftest import make_user, signed_in
from tests.identity.helpers import link, oneid_of


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def _form(**fields: str) -> dict[str, str]:
    base = {f"{side}_{part}": "" for side in ("left", "right") for part in ("type", "value", "oneid")}
    return {**base, "reason": "", **fields}


def _two_people(world: World) -> tuple[int, int]:
    brand = world.brands[0].id
    link(world.db, brand, "phone:13800138000", "device_id:d1")
    link(world.db, brand, "email:wang@example.com", "device_id:d2")
    first, second = oneid_of(world.db, brand, "phone:13800138000"), oneid_of(world.db, brand, "device_id:d2")
    assert first and second and first != second
    return first, second


def test_an_operator_merges_two_people_with_a_reason(client: Any, world: World) -> None:
    first, second = _two_people(world)
    make_user(world.db, "op", "operator", world.brands[0].id)
    s = signed_in(client, "op")

    # From a OneID's page to the merge form, the OneID already filled in.
    person = client.get("/console/oneid", params={"oneid": str(first)})
    assert f'href="/console/oneid/merge?oneid={first}"' in person.text
    page = client.get("/console/oneid/merge", params={"oneid": str(first)})
    assert page.status_code == 200 and 'id="oneid-merge"' in page.text
    assert f'name="left_oneid" value="{first}"' in page.text and "人工合并" in page.text

    # The reason is required; what was typed stays in the form.
    form = _form(left_oneid=str(first), right_type="email", right_value="wang@example.com")
    no_reason = s.post("/console/oneid/merge", form)
    assert no_reason.status_code == 422 and 'id="merge-errors"' in no_reason.text
    assert 'value="wang@example.com"' in no_reason.text
    assert oneid_of(world.db, world.brands[0].id, "email:wang@example.com") == second

    merged = s.post("/console/oneid/merge", {**form, "reason": "同一顾客，柜台核实"}, follow_redirects=False)
    assert merged.status_code == 303, merged.text
    kept = min(first, second)
    assert merged.headers["location"] == f"/console/oneid?oneid={kept}"
    assert oneid_of(world.db, world.brands[0].id, "email:wang@example.com") == kept
    shown = client.get(merged.headers["location"])
    assert f"OneID {kept} 合并了" in _text(shown.text)
    with world.db.unit_of_work(write=False) as session:
        made = session.scalars(select(IdentityLink).where(IdentityLink.rule == "manual-merge")).one()
        assert made.source == "manual" and made.created_by
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "oneid.merged_manually")).one()
        assert entry.changes["_note"] == "同一顾客，柜台核实" and entry.actor_name


def test_a_merge_over_a_limit_shows_the_recorded_conflict(client: Any, world: World) -> None:
    brand = world.brands[0]
    put = client.put(
        "/api/v1/oneid/settings", json={"types": {"device_id": {"max_per_person": 1}}}, headers=brand.headers
    )
    assert put.status_code == 200, put.text
    first, second = _two_people(world)
    make_user(world.db, "op", "operator", brand.id, locale="en")
    s = signed_in(client, "op")
    form = _form(left_oneid=str(first), right_oneid=str(second), reason="same customer")
    refused = s.post("/console/oneid/merge", form)
    assert refused.status_code == 409, refused.text
    notice = _text(refused.text.split('id="merge-refused"', 1)[1].split("</div>", 1)[0])
    with world.db.unit_of_work(write=False) as session:
        conflict = session.scalars(select(IdentityConflict)).one()  # committed despite the 409
        assert conflict.reason == "limit-exceeded" and conflict.detail["note"] == "same customer"
    assert f"recorded as conflict #{conflict.id}" in notice and "Over a per-person limit" in notice
    assert oneid_of(world.db, brand.id, "device_id:d2") == second  # nothing merged
    listed = client.get("/console/oneid/conflicts")
    assert f'id="conflict-{conflict.id}"' in listed.text


def test_unknown_people_and_other_brands_are_form_errors(client: Any, world: World) -> None:
    first, _second = _two_people(world)
    b = world.brands[1].id
    link(world.db, b, "phone:13800138001", "device_id:d9")
    theirs = oneid_of(world.db, b, "device_id:d9")
    make_user(world.db, "op", "operator", world.brands[0].id)
    s = signed_in(client, "op")
    for right in (
        {"right_oneid": str(theirs)},  # another brand's OneID
        {"right_type": "phone", "right_value": "13900000000"},  # nobody holds it
    ):
        r = s.post("/console/oneid/merge", _form(left_oneid=str(first), reason="x", **right))
        assert r.status_code == 404 and 'id="merge-errors"' in r.text, r.text
    neither = s.post("/console/oneid/merge", _form(left_oneid=str(first), reason="x"))
    assert neither.status_code == 422 and 'id="merge-errors"' in neither.text
    assert oneid_of(world.db, b, "device_id:d9") == theirs


def test_read_only_roles_see_no_form_and_cannot_post(client: Any, world: World) -> None:
    first, second = _two_people(world)
    make_user(world.db, "ana", "analyst", world.brands[0].id)
    s = signed_in(client, "ana")
    page = client.get("/console/oneid/merge")
    assert page.status_code == 200 and 'id="oneid-merge"' not in page.text
    assert "merge-with" not in client.get("/console/oneid", params={"oneid": str(first)}).text
    form = _form(left_oneid=str(first), right_oneid=str(second), reason="same")
    assert s.post("/console/oneid/merge", form).status_code == 403
    assert oneid_of(world.db, world.brands[0].id, "device_id:d2") == second
