"""(c) Member import: rows/s of ``huiyuan.members.importer.import_members`` on a generated CSV of
new members (Chinese names, unique phones, some e-mails) into an empty brand."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from bench.common import BenchWorld, emit


def write_csv(path: Path, rows: int, seed: int = 11) -> None:
    from faker import Faker

    rng = random.Random(seed)
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    cities = [
        ("上海市", "上海市"),
        ("北京市", "北京市"),
        ("广东省", "广州市"),
        ("浙江省", "杭州市"),
        ("四川省", "成都市"),
    ]
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["姓名", "手机号", "邮箱", "性别", "生日", "省份", "城市", "入会渠道"])
        for n in range(rows):
            province, city = rng.choice(cities)
            out.writerow(
                [
                    fake.last_name() + fake.first_name(),
                    f"199{n:08d}",
                    f"user{n}@example.com" if rng.random() < 0.3 else "",
                    rng.choice(["male", "female"]),
                    f"{rng.randint(1965, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    province,
                    city,
                    rng.choice(["store", "mini_program", "app"]),
                ]
            )


def run(world: BenchWorld, *, rows: int) -> None:
    try:
        from huiyuan.members.importer import import_members
    except ImportError:
        emit("member_import", 0.0, "rows/s", skipped="huiyuan.members.importer is missing")
        return
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import SYSTEM, system_for_brand
    from huiyuan.tenancy import service as tenancy

    path = world.dir / "members.csv"
    write_csv(path, rows)
    db = Database(world.url)
    with db.unit_of_work() as s:
        brand = tenancy.create_brand(
            s, actor=SYSTEM, code="benchimport", name="导入测试", member_number_prefix="BI"
        )
        brand_id = brand.id
    summary = import_members(db, actor=system_for_brand(brand_id), path=path, fmt="csv")
    db.dispose()
    emit(
        "member_import",
        summary.rows_per_second,
        "rows/s",
        rows=summary.processed_rows,
        created=summary.created,
        failed=summary.failed,
        seconds=round(summary.elapsed_seconds, 2),
        format="csv",
        db="sqlite",
    )
