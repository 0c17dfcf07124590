from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from sqlalchemy import func, select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit import pii
from huiyuan.kit.db import Database
from huiyuan.kit.errors import ValidationFailed
from huiyuan.kit.scope import Principal, Scope, system_for_brand
from huiyuan.members import importer, service
from huiyuan.members.importer import import_members
from huiyuan.members.models import ImportRowError, ImportRun, Member, MemberIdentifier
from huiyuan.members.repository import MemberFilter, MemberRepository
from huiyuan.members.schemas import MemberEnroll
from tests.conftest import World

HEADER = ["姓名", "手机", "邮箱", "性别", "生日", "城市", "兴趣", "wechat_openid"]


def write_csv(
    path: Path, rows: list[list[Any]], header: list[str] = HEADER, encoding: str = "utf-8-sig"
) -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def people(n: int, start: int = 0) -> list[list[Any]]:
    return [
        [
            f"会员{i}",
            f"139{i:08d}",
            f"u{i}@example.com",
            "男" if i % 2 else "女",
            "1990/5/20",
            "杭州市",
            "跑步|咖啡",
            f"o{i}",
        ]
        for i in range(start, start + n)
    ]


def members_of(db: Database, brand_id: int) -> list[Member]:
    with db.unit_of_work(Scope(brand_id=brand_id), write=False) as s:
        return list(s.scalars(select(Member).order_by(Member.id)))


def count(db: Database, model: Any, *where: Any) -> int:
    with db.unit_of_work(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_csv_with_bom_and_chinese_headers(world: World, tmp_path: Path) -> None:
    a = world.brands[0]
    path = write_csv(tmp_path / "m.csv", people(5))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    calls: list[tuple[int, int, str]] = []
    summary = import_members(
        world.db, actor=system_for_brand(a.id), path=path, fmt="csv", progress=lambda *c: calls.append(c)
    )
    assert (summary.status, summary.created, summary.failed, summary.processed_rows) == ("succeeded", 5, 0, 5)
    assert calls and calls[-1][:2] == (5, 5)
    members = members_of(world.db, a.id)
    assert [m.name for m in members] == [f"会员{i}" for i in range(5)]
    m = members[1]
    assert (m.status, m.gender, m.city, m.interests, m.enroll_channel) == (
        "prospect",
        "male",
        "杭州市",
        ["跑步", "咖啡"],
        "import",
    )
    assert m.birthday is not None and m.birthday.isoformat() == "1990-05-20"
    assert m.phone_enc and pii.decrypt(m.phone_enc) == "13900000001" and m.phone_bidx
    assert count(world.db, MemberIdentifier, MemberIdentifier.type == "wechat_openid") == 5
    # one audit row per member (enroll_member) and one for the run, with its counts
    assert count(world.db, AuditEntry, AuditEntry.action == "member.enrolled") == 5
    with world.db.unit_of_work(write=False) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "import.finished")).one()
        assert entry.entity_id == str(summary.run_id) and entry.changes["created"] == [None, 5]
        run = s.get(ImportRun, summary.run_id)
        assert run is not None and (run.status, run.created, run.total_rows, run.dry_run) == (
            "succeeded",
            5,
            5,
            False,
        )


def test_xlsx_with_typed_cells(world: World, tmp_path: Path) -> None:
    a = world.brands[0]
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["Name", "Phone", "Birthday", "Status", "card_number", "Enrolled_At", None])
    ws.append(
        ["Li Lei", 13800138000, datetime(1988, 3, 4), "active", "C-1001", datetime(2024, 1, 2, 10, 30), None]
    )
    ws.append([None, None, None, None, None, None, None])  # Excel's trailing blank row
    ws.append(["Han Meimei", 13800138001.0, None, None, None, None, None])
    path = tmp_path / "m.xlsx"
    wb.save(path)
    summary = import_members(world.db, actor=system_for_brand(a.id), path=path, fmt="xlsx")
    assert (summary.created, summary.failed, summary.processed_rows) == (2, 0, 2)
    li, han = members_of(world.db, a.id)
    assert li.status == "active" and han.status == "prospect"
    assert li.birthday is not None and li.birthday.isoformat() == "1988-03-04"
    assert li.phone_enc and pii.decrypt(li.phone_enc) == "13800138000"
    assert han.phone_enc and pii.decrypt(han.phone_enc) == "13800138001"
    # a naive time is the brand's business time (Asia/Shanghai): 10:30 there is 02:30 UTC
    assert li.enrolled_at.isoformat() == "2024-01-02T02:30:00+00:00"


def test_row_errors_are_reported_with_row_numbers(world: World, tmp_path: Path) -> None:
    a = world.brands[0]
    rows = [
        ["好人", "13900000001", "", "", "", "", "", ""],  # row 2: fine
        ["坏手机", "12345", "", "", "", "", "", ""],  # row 3: bad phone
        ["坏邮箱", "13900000003", "not-an-email", "", "", "", "", ""],  # row 4: bad email
        ["无标识", "", "", "", "", "", "", ""],  # row 5: nothing to de-duplicate on
        ["重复", "139 0000 0001", "", "", "", "", "", ""],  # row 6: same phone as row 2
        ["坏生日", "13900000007", "", "", "2999-01-01", "", "", ""],  # row 7: future birthday
    ]
    path = write_csv(tmp_path / "bad.csv", rows)
    summary = import_members(world.db, actor=system_for_brand(a.id), path=path, fmt="csv")
    assert (summary.created, summary.failed, summary.skipped) == (1, 5, 0)
    with world.db.unit_of_work(write=False) as s:
        errors = {
            (e.row_number, e.column, e.code)
            for e in s.scalars(select(ImportRowError).where(ImportRowError.import_run_id == summary.run_id))
        }
    by_row = {row: (column, code) for row, column, code in errors}
    assert by_row[3][0] == "手机" and by_row[4][0] == "邮箱" and by_row[7][0] == "生日"
    assert by_row[5] == (None, "no-identifier")
    assert by_row[6] == ("手机", "duplicate-in-file")
    # the report: masked without members:pii, unmasked with it
    reader_only = Principal(
        kind="system", id=None, name="t", scope=Scope(brand_id=a.id), permissions=frozenset({"imports:write"})
    )
    with world.db.unit_of_work(Scope(brand_id=a.id), write=False) as s:
        masked = "".join(importer.iter_error_report(s, actor=reader_only, run_id=summary.run_id))
        full = "".join(importer.iter_error_report(s, actor=system_for_brand(a.id), run_id=summary.run_id))
    assert masked.startswith("\ufeff")
    report = list(csv.DictReader(io.StringIO(full.lstrip("\ufeff"))))
    assert [r["row_number"] for r in report] == ["3", "4", "5", "6", "7"]
    dup = next(r for r in report if r["row_number"] == "6")
    assert dup["message"] == "duplicate of row 2" and dup["手机"] == "139 0000 0001" and dup["姓名"] == "重复"
    masked_rows = list(csv.DictReader(io.StringIO(masked.lstrip("\ufeff"))))
    masked_dup = next(r for r in masked_rows if r["row_number"] == "6")
    assert (
        masked_dup["手机"] != "139 0000 0001"
        and "****" in masked_dup["手机"]
        and masked_dup["姓名"] == "重复"
    )
    # PII of failed rows is not stored in plaintext
    with world.db.unit_of_work(write=False) as s:
        for err in s.scalars(select(ImportRowError)):
            assert "手机" not in err.raw and "邮箱" not in err.raw


def test_dry_run_writes_nothing(world: World, tmp_path: Path) -> None:
    a = world.brands[0]
    path = write_csv(tmp_path / "m.csv", [*people(3), ["x", "bad", "", "", "", "", "", ""]])
    summary = import_members(world.db, actor=system_for_brand(a.id), path=path, fmt="csv", dry_run=True)
    assert (summary.dry_run, summary.created, summary.failed) == (True, 3, 1)
    assert members_of(world.db, a.id) == []
    assert count(world.db, MemberIdentifier) == 0
    assert count(world.db, AuditEntry, AuditEntry.action == "member.enrolled") == 0
    with world.db.unit_of_work(write=False) as s:
        run = s.get(ImportRun, summary.run_id)
        assert run is not None and run.dry_run and run.created == 3 and run.failed == 1
        assert s.scalar(select(func.count()).select_from(ImportRowError)) == 1


def _existing(db: Database, brand_id: int) -> int:
    with db.unit_of_work(Scope(brand_id=brand_id)) as s:
        data = MemberEnroll(name="老会员", phone="13900000001", enroll_channel="store", status="active")
        return service.enroll_member(s, actor=system_for_brand(brand_id), data=data).id


def test_skip_then_update_fills_only_empty_fields(world: World, tmp_path: Path) -> None:
    a = world.brands[0]
    member_id = _existing(world.db, a.id)
    path = write_csv(
        tmp_path / "m.csv", [["新名字", "13900000001", "new@example.com", "女", "", "苏州市", "", "oNEW"]]
    )
    actor = system_for_brand(a.id)
    skipped = import_members(world.db, actor=actor, path=path, fmt="csv")
    assert (skipped.created, skipped.updated, skipped.skipped) == (0, 0, 1)
    (m,) = members_of(world.db, a.id)
    assert m.city is None and m.email_enc is None
    updated = import_members(world.db, actor=actor, path=path, fmt="csv", on_duplicate="update")
    assert (updated.created, updated.updated, updated.skipped) == (0, 1, 0)
    (m,) = members_of(world.db, a.id)
    assert (m.id, m.name, m.city, m.gender, m.status) == (member_id, "老会员", "苏州市", "female", "active")
    assert m.email_enc and pii.decrypt(m.email_enc) == "new@example.com"
    with world.db.unit_of_work(Scope(brand_id=a.id), write=False) as s:
        types = sorted(i.type for i in MemberRepository(s).identifiers([member_id])[member_id])
    assert types == ["email", "phone", "wechat_openid"]
    # nothing left to fill: a second update run changes nothing
    again = import_members(world.db, actor=actor, path=path, fmt="csv", on_duplicate="update")
    assert (again.updated, again.skipped) == (0, 1)


def test_blank_cells_never_overwrite(world: World, tmp_path: Path) -> None:
    a = world.brands[0]
    _existing(world.db, a.id)
    path = write_csv(tmp_path / "m.csv", [["", "13900000001", "", "", "", "", "", ""]])
    summary = import_members(
        world.db, actor=system_for_brand(a.id), path=path, fmt="csv", on_duplicate="update"
    )
    assert (summary.updated, summary.skipped) == (0, 1)
    assert members_of(world.db, a.id)[0].name == "老会员"


def test_rerun_is_a_no_op_across_chunks(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "CHUNK_ROWS", 4)
    a = world.brands[0]
    rows = people(10)
    rows.insert(7, ["重复", "13900000002", "", "", "", "", "", ""])  # same phone as row 4, next chunk
    path = write_csv(tmp_path / "m.csv", rows)
    actor = system_for_brand(a.id)
    calls: list[int] = []
    first = import_members(
        world.db, actor=actor, path=path, fmt="csv", progress=lambda d, t, m: calls.append(d)
    )
    assert (first.created, first.failed) == (10, 1)
    assert calls == [4, 8, 11]
    for mode in ("skip", "update"):
        again = import_members(world.db, actor=actor, path=path, fmt="csv", on_duplicate=mode)
        assert (again.created, again.updated, again.skipped, again.failed) == (0, 0, 10, 1)
    assert len(members_of(world.db, a.id)) == 10
    assert count(world.db, AuditEntry, AuditEntry.action == "member.updated") == 0


def test_identifiers_of_two_members_is_an_error(world: World, tmp_path: Path) -> None:
    a = world.brands[0]
    _existing(world.db, a.id)
    with world.db.unit_of_work(Scope(brand_id=a.id)) as s:
        data = MemberEnroll(email="other@example.com", enroll_channel="store")
        service.enroll_member(s, actor=system_for_brand(a.id), data=data)
    path = write_csv(tmp_path / "m.csv", [["x", "13900000001", "other@example.com", "", "", "", "", ""]])
    summary = import_members(world.db, actor=system_for_brand(a.id), path=path, fmt="csv")
    assert (summary.failed, summary.skipped) == (1, 0)
    with world.db.unit_of_work(write=False) as s:
        assert s.scalars(select(ImportRowError.code)).one() == "ambiguous-match"


def test_unknown_column_fails_before_any_row(world: World, tmp_path: Path) -> None:
    a = world.brands[0]
    path = write_csv(tmp_path / "m.csv", people(2), header=[*HEADER[:-1], "鞋码"])
    with pytest.raises(ValidationFailed) as info:
        import_members(world.db, actor=system_for_brand(a.id), path=path, fmt="csv")
    assert info.value.errors[0]["field"] == "鞋码" and info.value.errors[0]["code"] == "unknown-column"
    assert "鞋码" in info.value.detail
    assert count(world.db, ImportRun) == 0 and members_of(world.db, a.id) == []


def test_gb18030_csv_and_custom_fields(world: World, tmp_path: Path) -> None:
    from huiyuan.members import field_definitions
    from huiyuan.members.custom_field_schemas import CustomFieldCreate

    a = world.brands[0]
    with world.db.unit_of_work(Scope(brand_id=a.id)) as s:
        field_definitions.define_field(
            s,
            actor=system_for_brand(a.id),
            data=CustomFieldCreate.model_validate(
                {
                    "key": "shoe_size",
                    "labels": {"zh": "鞋码", "en": "Shoe size"},
                    "type": "integer",
                    "max": 50,
                }
            ),
        )
    path = write_csv(
        tmp_path / "gbk.csv",
        [["张三", "13900000001", "42"], ["李四", "13900000002", "99"]],
        header=["姓名", "手机", "custom.shoe_size"],
        encoding="gb18030",
    )
    summary = import_members(world.db, actor=system_for_brand(a.id), path=path, fmt="csv")
    assert (summary.created, summary.failed) == (1, 1)
    (m,) = members_of(world.db, a.id)
    assert m.name == "张三" and m.custom == {"shoe_size": 42}
    with world.db.unit_of_work(write=False) as s:
        err = s.scalars(select(ImportRowError)).one()
    assert (err.row_number, err.column) == (3, "custom.shoe_size")


def test_tenancy_rows_go_to_the_actors_brand(world: World, tmp_path: Path) -> None:
    a, b = world.brands
    path = write_csv(tmp_path / "m.csv", people(2))
    import_members(world.db, actor=system_for_brand(a.id), path=path, fmt="csv")
    summary = import_members(world.db, actor=system_for_brand(b.id), path=path, fmt="csv")
    assert summary.created == 2  # identifiers are unique per brand, not across brands
    with world.db.unit_of_work(Scope(brand_id=b.id), write=False) as s:
        assert len(MemberRepository(s).list(MemberFilter(), after_id=None, limit=10)) == 2
        assert importer.list_runs(s, after_id=None, limit=10)[0].id == summary.run_id
        assert len(importer.list_runs(s, after_id=None, limit=10)) == 1


# -- API -------------------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from huiyuan.settings import reset_settings_cache

    monkeypatch.setenv("HUIYUAN_DATA_DIR", str(tmp_path / "var"))
    reset_settings_cache()
    yield tmp_path / "var"
    monkeypatch.undo()
    reset_settings_cache()


def csv_bytes(rows: list[list[Any]], header: list[str] = HEADER) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" + buffer.getvalue()).encode()


def upload(client: Any, headers: dict[str, str], body: bytes, name: str = "m.csv", **form: str) -> Any:
    return client.post(
        "/api/v1/imports/members", files={"file": (name, body, "text/csv")}, data=form, headers=headers
    )


def test_api_upload_runs_as_job_and_reports_errors(client: Any, world: World, data_dir: Path) -> None:
    a, b = world.brands
    body = csv_bytes([*people(3), ["坏", "123", "", "", "", "", "", ""]])
    r = upload(client, a.headers, body)
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["job_id"] and run["errors_url"] == f"/api/v1/imports/{run['id']}/errors.csv"
    stored = list((data_dir / "imports").iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".csv" and "m.csv" not in stored[0].name
    status = client.get(f"/api/v1/imports/{run['id']}", headers=a.headers).json()
    assert (status["status"], status["created"], status["failed"], status["processed_rows"]) == (
        "succeeded",
        3,
        1,
        4,
    )
    assert status["percent"] == 100.0
    job = client.get(f"/api/v1/jobs/{run['job_id']}", headers=a.headers).json()
    assert job["status"] == "succeeded" and job["result"]["created"] == 3 and job["progress_done"] == 4
    report = client.get(status["errors_url"], headers=a.headers)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(report.content.decode("utf-8-sig"))))
    assert [(x["row_number"], x["column"]) for x in lines] == [("5", "手机")]
    listed = client.get("/api/v1/imports", headers=a.headers).json()
    assert [i["id"] for i in listed["items"]] == [run["id"]]
    assert len(client.get("/api/v1/members", headers=a.headers).json()["items"]) == 3
    # another brand sees none of it
    assert client.get(f"/api/v1/imports/{run['id']}", headers=b.headers).status_code == 404
    assert client.get(status["errors_url"], headers=b.headers).status_code == 404
    assert client.get("/api/v1/imports", headers=b.headers).json()["items"] == []


def test_api_dry_run_update_and_rerun(client: Any, world: World, data_dir: Path) -> None:
    a = world.brands[0]
    body = csv_bytes(people(2))
    dry = upload(client, a.headers, body, dry_run="true").json()
    dry = client.get(f"/api/v1/imports/{dry['id']}", headers=a.headers).json()
    assert (dry["dry_run"], dry["created"], dry["status"]) == (True, 2, "succeeded")
    assert client.get("/api/v1/members", headers=a.headers).json()["items"] == []
    first = upload(client, a.headers, body, default_status="active").json()
    again = upload(client, a.headers, body, on_duplicate="update").json()
    first = client.get(f"/api/v1/imports/{first['id']}", headers=a.headers).json()
    again = client.get(f"/api/v1/imports/{again['id']}", headers=a.headers).json()
    assert (first["created"], again["created"], again["skipped"]) == (2, 0, 2)
    members = client.get("/api/v1/members", headers=a.headers).json()["items"]
    assert [m["status"] for m in members] == ["active", "active"]


def test_api_refuses_bad_files_at_once(client: Any, world: World, data_dir: Path) -> None:
    a = world.brands[0]
    r = upload(client, a.headers, csv_bytes(people(1), header=[*HEADER[:-1], "nickname"]))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "nickname"
    r = upload(client, a.headers, b"%PDF-1.4 ...", name="m.pdf")
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "unsupported-format"
    r = upload(client, a.headers, csv_bytes(people(1)), on_duplicate="overwrite")
    assert r.status_code == 422
    assert client.get("/api/v1/imports", headers=a.headers).json()["items"] == []
    assert not (data_dir / "imports").exists() or list((data_dir / "imports").iterdir()) == []


def test_api_permissions(client: Any, world: World, data_dir: Path) -> None:
    from tests.factories import make_key

    a = world.brands[0]
    key = make_key(world.db, a.id, ["members:read", "members:write"])
    r = upload(client, {"Authorization": f"Bearer {key}"}, csv_bytes(people(1)))
    assert r.status_code == 403
    # a platform key must choose a brand
    r = upload(client, world.platform_headers, csv_bytes(people(1)))
    assert r.status_code == 422 and r.json()["code"] == "brand-required"
    r = upload(client, {**world.platform_headers, "X-Huiyuan-Brand": "alpha"}, csv_bytes(people(1)))
    assert r.status_code == 202


def test_api_upload_limits(
    client: Any, world: World, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huiyuan.settings import reset_settings_cache

    a = world.brands[0]
    # a workbook uploaded under a .csv name is read as a workbook
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["姓名", "手机"])
    ws.append(["张三", "13900000001"])
    buffer = io.BytesIO()
    wb.save(buffer)
    run = upload(client, a.headers, buffer.getvalue(), name="really.csv").json()
    assert (
        run["format"],
        client.get(f"/api/v1/imports/{run['id']}", headers=a.headers).json()["created"],
    ) == (
        "xlsx",
        1,
    )
    monkeypatch.setenv("HUIYUAN_MAX_BODY_BYTES", "64")
    reset_settings_cache()
    r = upload(client, a.headers, csv_bytes(people(5)))
    assert r.status_code == 413 and r.json()["code"] == "payload-too-large"


_batch = iter(range(1, 10_000))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=8))
def test_property_in_file_duplicates_and_rerun(world: World, tmp_path: Path, picks: list[int]) -> None:
    """Whatever the repeats in a file: one member per distinct phone, one error per repeat, and
    importing the file again creates nothing."""
    a = world.brands[0]
    batch = next(_batch)
    rows = [[f"p{p}", f"13{batch:04d}{p:05d}", "", "", "", "", "", ""] for p in picks]
    path = write_csv(tmp_path / f"p{batch}.csv", rows)
    actor = system_for_brand(a.id)
    first = import_members(world.db, actor=actor, path=path, fmt="csv")
    assert (first.created, first.failed) == (len(set(picks)), len(picks) - len(set(picks)))
    again = import_members(world.db, actor=actor, path=path, fmt="csv", on_duplicate="update")
    assert (again.created, again.updated, again.skipped) == (0, 0, len(set(picks)))


def test_run_pending_is_idempotent_and_fails_cleanly(world: World, data_dir: Path) -> None:
    a = world.brands[0]
    actor = system_for_brand(a.id)

    def start() -> tuple[int, str]:
        with world.db.unit_of_work(actor.scope) as s:
            run = importer.start_upload(
                s,
                actor=actor,
                stream=io.BytesIO(csv_bytes(people(2))),
                filename="m.csv",
                dry_run=False,
                on_duplicate="skip",
                default_status="prospect",
            )
            assert run.status == "pending" and run.stored_path
            return run.id, run.stored_path

    run_id, _ = start()
    first = importer.run_pending(world.db, actor=actor, run_id=run_id)
    again = importer.run_pending(world.db, actor=actor, run_id=run_id)  # a redelivered job
    assert (first.created, again.created, again.status) == (2, 2, "succeeded")
    assert len(members_of(world.db, a.id)) == 2 and count(world.db, ImportRun) == 1
    run_id, stored = start()
    Path(stored).unlink()
    with pytest.raises(FileNotFoundError):
        importer.run_pending(world.db, actor=actor, run_id=run_id)
    with world.db.unit_of_work(write=False) as s:
        run = s.get(ImportRun, run_id)
        assert run is not None and run.status == "failed" and "FileNotFoundError" in (run.error or "")


@pytest.mark.parametrize("dry_run", [False, True])
def test_long_chunks_commit_in_parts(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dry_run: bool
) -> None:
    from huiyuan.members import import_writer

    monkeypatch.setattr(import_writer, "TRANSACTION_SECONDS", 0.0)  # every row its own transaction
    a = world.brands[0]
    rows = [
        *people(3),
        ["坏", "123", "", "", "", "", "", ""],
        ["重复", "13900000001", "", "", "", "", "", ""],
    ]
    path = write_csv(tmp_path / "m.csv", rows)
    summary = import_members(world.db, actor=system_for_brand(a.id), path=path, fmt="csv", dry_run=dry_run)
    assert (summary.processed_rows, summary.created, summary.failed) == (5, 3, 2)
    assert len(members_of(world.db, a.id)) == (0 if dry_run else 3)
    with world.db.unit_of_work(write=False) as s:
        run = s.get(ImportRun, summary.run_id)
        assert run is not None and (run.processed_rows, run.created, run.failed) == (5, 3, 2)
        assert sorted(s.scalars(select(ImportRowError.row_number))) == [5, 6]
