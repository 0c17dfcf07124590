from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.scope import Scope, system_for_brand
from huiyuan.members import export
from huiyuan.members.importer import import_members
from huiyuan.members.repository import MemberFilter
from tests.conftest import World
from tests.factories import enroll, make_key


def rows_of(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


def test_export_is_masked_without_pii_permission(client: Any, world: World) -> None:
    a = world.brands[0]
    enroll(
        client,
        a.headers,
        name="王小明",
        phone="13800138000",
        email="wang@example.com",
        interests=["跑步", "咖啡"],
        enroll_store_code="alpha-s1",
        identifiers=[{"type": "wechat_openid", "value": "oAbcdef123"}],
    )
    full = client.get("/api/v1/members/export.csv", headers=a.headers)
    assert full.status_code == 200, full.text  # not shadowed by /api/v1/members/{member_id}
    assert full.headers["content-type"].startswith("text/csv")
    assert "attachment" in full.headers["content-disposition"]
    (row,) = rows_of(full.content.decode())
    assert (row["name"], row["phone"], row["email"], row["wechat_openid"]) == (
        "王小明",
        "13800138000",
        "wang@example.com",
        "oAbcdef123",
    )
    assert (row["interests"], row["enroll_store_code"], row["status"]) == ("跑步|咖啡", "alpha-s1", "active")
    reader = make_key(world.db, a.id, ["members:read"])
    masked = client.get("/api/v1/members/export.csv", headers={"Authorization": f"Bearer {reader}"})
    (row,) = rows_of(masked.content.decode())
    assert row["name"] == "王小明"
    assert row["phone"] == "138****8000" and row["email"] == "w***@example.com"
    assert row["wechat_openid"] != "oAbcdef123" and "*" in row["wechat_openid"]
    with world.db.unit_of_work(write=False) as s:
        audits = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "members.exported").order_by(AuditEntry.id)
        ).all()
    assert [e.changes["pii"][1] for e in audits] == [True, False]
    nobody = make_key(world.db, a.id, ["orders:read"])
    assert (
        client.get("/api/v1/members/export.csv", headers={"Authorization": f"Bearer {nobody}"}).status_code
        == 403
    )


def test_export_tenancy_and_filters(client: Any, world: World) -> None:
    a, b = world.brands
    enroll(client, a.headers, name="甲", phone="13800138000")
    enroll(client, a.headers, name="乙", phone="13800138001", status="prospect")
    enroll(client, b.headers, name="丙", phone="13800138002")
    names = [r["name"] for r in rows_of(client.get("/api/v1/members/export.csv", headers=a.headers).text)]
    assert names == ["甲", "乙"]
    names = [r["name"] for r in rows_of(client.get("/api/v1/members/export.csv", headers=b.headers).text)]
    assert names == ["丙"]
    r = client.get("/api/v1/members/export.csv?status=prospect", headers=a.headers)
    assert [x["name"] for x in rows_of(r.text)] == ["乙"]
    r = client.get("/api/v1/members/export.csv", headers=world.platform_headers)
    assert r.status_code == 422 and r.json()["code"] == "brand-required"
    r = client.get(
        "/api/v1/members/export.csv", headers={**world.platform_headers, "X-Huiyuan-Brand": "beta"}
    )
    assert [x["name"] for x in rows_of(r.text)] == ["丙"]


def test_export_pages_and_round_trips_through_import(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "EXPORT_PAGE", 2)
    a = world.brands[0]
    source = tmp_path / "in.csv"
    with source.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "phone", "device_id", "city"])
        for i in range(5):
            w.writerow([f"m{i}", f"1390000000{i}", f"d{i}a|d{i}b", "上海市"])
    actor = system_for_brand(a.id)
    assert import_members(world.db, actor=actor, path=source, fmt="csv").created == 5
    with world.db.unit_of_work(Scope(brand_id=a.id), write=False) as s:
        text = "".join(export.iter_members_csv(s, actor, MemberFilter()))
    rows = rows_of(text)
    assert [r["name"] for r in rows] == [f"m{i}" for i in range(5)]
    assert rows[0]["device_id"] == "d0a|d0b" and rows[0]["enroll_channel"] == "import"
    exported = tmp_path / "out.csv"
    exported.write_text(text, encoding="utf-8")
    again = import_members(world.db, actor=actor, path=exported, fmt="csv", on_duplicate="update")
    assert (again.created, again.updated, again.skipped, again.failed) == (0, 0, 5, 0)


def test_cli_import_and_export(world: World, tmp_path: Path) -> None:
    from huiyuan.cli.main import app

    source = tmp_path / "in.csv"
    source.write_text("\ufeff姓名,手机\n张三,13900000001\n坏,123\n", encoding="utf-8")
    report = tmp_path / "errors.csv"
    runner = CliRunner()
    args = ["import", "members", str(source), "--db", world.db.url, "--brand", "alpha"]
    result = runner.invoke(app, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    result = runner.invoke(app, [*args, "--report", str(report), "--status", "active"])
    assert result.exit_code == 0, result.output
    lines = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8-sig"))))
    assert [(x["row_number"], x["column"], x["手机"]) for x in lines] == [("3", "手机", "123")]
    out = tmp_path / "members.csv"
    result = runner.invoke(
        app, ["export", "members", "--db", world.db.url, "--brand", "alpha", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    (row,) = rows_of(out.read_text(encoding="utf-8"))
    assert (row["name"], row["phone"], row["status"]) == ("张三", "139****0001", "active")
    result = runner.invoke(app, ["export", "members", "--db", world.db.url, "--brand", "alpha", "--pii"])
    assert result.exit_code == 0 and "13900000001" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("nickname\nx\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "members", str(bad), "--db", world.db.url, "--brand", "alpha"])
    assert result.exit_code == 1 and "nickname" in result.output
    result = runner.invoke(app, [*args[:-2], "--brand", "nope"])
    assert result.exit_code != 0
