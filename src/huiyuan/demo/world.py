"""Builds the whole demo world into a migrated, empty database and returns its logins.

Access (brands, stores, console users, API keys) goes through the real services so it is audited
like any other change; the history (catalogue, members, orders, refunds, consents) is a bulk backfill
through ``demo.bulk``: one ``demo.seeded`` audit row per brand with the counts, and no outbox event per
historical row (live orders sent to the API do emit events). Everything random comes from
``random.Random`` streams and a Faker seeded from ``seed``, so the same seed and end time give the
same members and orders. Must not print: progress goes to a ``Reporter``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from faker import Faker
from sqlalchemy import select

from huiyuan.audit import service as audit
from huiyuan.auth import service as auth
from huiyuan.auth.permissions import BRAND_ADMIN
from huiyuan.demo.bulk import BulkWriter
from huiyuan.demo.catalog import build_catalog
from huiyuan.demo.coupons import build_coupons
from huiyuan.demo.loyalty import LoyaltyBrand, build_loyalty
from huiyuan.demo.people import LOCAL, Buyers, People, PhoneBook, StoreRef, build_members, utc
from huiyuan.demo.reference import BRANDS, CITIES, MALLS, BrandProfile
from huiyuan.demo.sales import SalesResult, build_orders, write_refunds
from huiyuan.demo.seasons import day_factor
from huiyuan.events import sources as event_sources
from huiyuan.events.demo import EventsBrand, build_events
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.errors import Conflict
from huiyuan.kit.scope import SYSTEM, system_for_brand
from huiyuan.tenancy import service as tenancy
from huiyuan.tenancy.models import Brand
from huiyuan.tenancy.repository import TenancyRepository

BRAND_ROLES = (("admin", "brand_admin"), ("ops", "operator"), ("analyst", "analyst"))


class Reporter:
    """Receives progress of the long phases; this default ignores it."""

    def start(self, phase: str, total: int) -> None:
        return None

    def advance(self, phase: str, rows: int) -> None:
        return None

    def finish(self, phase: str) -> None:
        return None


@dataclass
class Login:
    username: str
    password: str
    role: str


@dataclass
class DemoBrand:
    id: int
    code: str
    name: str
    prefix: str
    api_key: str
    users: list[Login]
    stores: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    write_key: str = ""  # the tracking API key of the brand's web source
    web_source_id: int = 0


@dataclass
class DemoWorld:
    seed: int
    months: int
    end: datetime
    platform_api_key: str
    platform_user: Login
    brands: list[DemoBrand]

    def credentials(self, console_url: str | None = None) -> dict[str, Any]:
        """The credentials file: the keys the issue names, plus stores, all users and counts."""
        return {
            "platform_api_key": self.platform_api_key,
            "platform_console_user": self.platform_user.username,
            "platform_console_password": self.platform_user.password,
            "console_url": console_url,
            "api_docs_url": f"{console_url.rstrip('/')}/docs" if console_url else None,
            "seed": self.seed,
            "months": self.months,
            "history_ends_at": self.end.isoformat(),
            "brands": [
                {
                    "code": b.code,
                    "name": b.name,
                    "api_key": b.api_key,
                    "write_key": b.write_key,
                    "console_user": b.users[0].username,
                    "console_password": b.users[0].password,
                    "users": [u.__dict__ for u in b.users],
                    "member_number_prefix": b.prefix,
                    "stores": b.stores,
                    "counts": b.counts,
                }
                for b in self.brands
            ],
        }


def _password(rng: random.Random, label: str) -> str:
    letters = "".join(rng.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(4))
    return f"{label.capitalize()}-{rng.randrange(1000, 10000)}-{letters}"


def _pick_stores(rng: random.Random, profile: BrandProfile) -> list[tuple[str, str, str, str]]:
    """(code, name, province, city) of the brand's stores: weighted by city size, without repeats."""
    weights = {c[0]: c[3] for c in CITIES}
    where = {c[0]: (c[1], c[2]) for c in CITIES}
    pairs = [(city, mall, i) for city, malls in MALLS.items() for i, mall in enumerate(malls)]
    # Efraimidis–Spirakis: sort by u^(1/w) to sample without replacement in proportion to w.
    keyed = sorted(pairs, key=lambda p: rng.random() ** (1.0 / (weights[p[0]] / (p[2] + 1))), reverse=True)
    out = []
    per_city: dict[str, int] = {}
    for city, mall, _i in keyed[: profile.stores]:
        per_city[city] = per_city.get(city, 0) + 1
        province, city_name = where[city]
        out.append(
            (
                f"{city}-{per_city[city]:02d}",
                f"{profile.name}{city_name.removesuffix('市')}{mall}店",
                province,
                city_name,
            )
        )
    return out


def _setup_access(db: Database, seed: int) -> tuple[str, Login, list[DemoBrand], dict[str, list[StoreRef]]]:
    """Brands, stores, console users and API keys through the services (audited)."""
    pw_rng = random.Random(f"{seed}:passwords")
    brands: list[DemoBrand] = []
    stores: dict[str, list[StoreRef]] = {}
    with db.unit_of_work() as s:
        existing = s.scalars(select(Brand.code).where(Brand.code.in_([p.code for p in BRANDS]))).all()
        if existing:
            raise Conflict(
                f"The database already holds demo brands ({', '.join(existing)}); use an empty one."
            )
        admin = Login("admin", _password(pw_rng, "admin"), "platform_admin")
        auth.create_user(
            s,
            actor=SYSTEM,
            username=admin.username,
            password=admin.password,
            role=admin.role,
            brand_id=None,
            display_name="平台管理员",
        )
        platform_key = auth.create_api_key(s, actor=SYSTEM, name="demo platform", scopes=["*"], brand_id=None)
        for profile in BRANDS:
            brand = tenancy.create_brand(
                s, actor=SYSTEM, code=profile.code, name=profile.name, member_number_prefix=profile.prefix
            )
            actor = system_for_brand(brand.id)
            refs = []
            for code, name, province, city in _pick_stores(
                random.Random(f"{seed}:{profile.code}:stores"), profile
            ):
                store = tenancy.create_store(
                    s, actor=actor, code=code, name=name, city=city, province=province
                )
                refs.append(StoreRef(store.id, code, code.split("-")[0]))
            stores[profile.code] = refs
            users = []
            for suffix, role in BRAND_ROLES:
                login = Login(f"{profile.code}_{suffix}", _password(pw_rng, profile.code), role)
                auth.create_user(
                    s,
                    actor=actor,
                    username=login.username,
                    password=login.password,
                    role=role,
                    brand_id=brand.id,
                )
                users.append(login)
            key = auth.create_api_key(
                s, actor=actor, name=f"demo {profile.code}", scopes=sorted(BRAND_ADMIN), brand_id=brand.id
            )
            web = event_sources.create_source(s, actor=actor, name="官网 web", kind="web")
            brands.append(
                DemoBrand(
                    brand.id,
                    profile.code,
                    profile.name,
                    profile.prefix,
                    key.secret,
                    users,
                    [r.code for r in refs],
                    write_key=web.write_key,
                    web_source_id=web.source.id,
                )
            )
    return platform_key.secret, admin, brands, stores


def _split(members: int) -> list[int]:
    counts = [round(members * p.member_share) for p in BRANDS[:-1]]
    return [*counts, members - sum(counts)]


def build_world(
    db: Database,
    *,
    members: int = 20_000,
    seed: int = 7,
    months: int = 24,
    end: datetime | None = None,
    reporter: Reporter | None = None,
    loyalty: bool = True,
    coupons: bool = False,
    coupon_days: int = 60,
    events: int = 0,
) -> DemoWorld:
    """Write the demo world into ``db`` (migrated, without demo brands) and return its logins;
    ``loyalty`` also configures and lives each brand's loyalty programme (``demo.loyalty``),
    ``coupons`` each brand's coupons over the last 60 days (``demo.coupons``), ``events`` that many
    tracking events with each brand's tracking plan (``events.demo``)."""
    reporter = reporter or Reporter()
    end = end or utcnow()
    last_day = (end + LOCAL).date()
    n_days = max(1, round(months * 30.4375))
    first_day = last_day - timedelta(days=n_days - 1)
    days = [first_day + timedelta(days=i) for i in range(n_days)]
    start = utc(first_day)

    platform_key, admin, brands, stores = _setup_access(db, seed)
    faker = Faker("zh_CN")
    faker.seed_instance(seed)
    people = People(random.Random(f"{seed}:people"), faker, PhoneBook(random.Random(f"{seed}:phones")))
    anon_phones = people.phones
    sizes = _split(members)

    with db.engine.connect() as conn:
        writer = BulkWriter(conn)
        catalogs = {}
        for profile, brand in zip(BRANDS, brands, strict=True):
            rng = random.Random(f"{seed}:{profile.code}:catalog")
            catalogs[profile.code] = build_catalog(writer, rng, profile, brand.id, start)
            brand.counts["products"] = len(catalogs[profile.code])
        writer.commit()

        reporter.start("members", members)
        buyers: dict[str, Buyers] = {}
        for profile, brand, size in zip(BRANDS, brands, sizes, strict=True):
            growth = _growth(days, profile.kind)
            enroll_weights = [g**0.5 * (0.5 + 0.5 * (i + 1) / n_days) for i, g in enumerate(growth)]
            buyers[profile.code], counts = build_members(
                writer,
                random.Random(f"{seed}:{profile.code}:members"),
                people,
                profile,
                brand.id,
                size,
                stores=stores[profile.code],
                start=start,
                end=end,
                day_weights=enroll_weights,
                advance=lambda n: reporter.advance("members", n),
            )
            brand.counts.update(counts)
        reporter.finish("members")

        expected = int(
            sum(
                size * p.orders_per_member * months / 24 * 1.08 for p, size in zip(BRANDS, sizes, strict=True)
            )
        )
        reporter.start("orders", expected)
        sales: list[SalesResult] = []
        for profile, brand in zip(BRANDS, brands, strict=True):
            result = build_orders(
                writer,
                random.Random(f"{seed}:{profile.code}:orders"),
                profile,
                brand.id,
                buyers=buyers[profile.code],
                skus=catalogs[profile.code],
                stores=stores[profile.code],
                phones=anon_phones,
                start=start,
                end=end,
                days=days,
                day_factors=_growth(days, profile.kind),
                months=months,
                advance=lambda n: reporter.advance("orders", n),
            )
            brand.counts.update(result.counts)
            sales.append(result)
        reporter.finish("orders")

        reporter.start("refunds", sum(len(r.refunds) for r in sales))
        for result in sales:
            write_refunds(writer, result, advance=lambda n: reporter.advance("refunds", n))
        reporter.finish("refunds")
        writer.sync_sequences()

    if loyalty:
        loyalty_counts = build_loyalty(
            db,
            [LoyaltyBrand(b.id, b.code, [r.id for r in stores[b.code]]) for b in brands],
            seed=seed,
            start=start,
            end=end,
            start_phase=reporter.start,
            advance=reporter.advance,
            finish_phase=reporter.finish,
        )
        for brand in brands:
            brand.counts.update(loyalty_counts[brand.code])

    if coupons:
        coupon_counts = build_coupons(
            db,
            [(b.id, b.code, [r.id for r in stores[b.code]]) for b in brands],
            seed=seed,
            end=end,
            days=coupon_days,
            start_phase=reporter.start,
            advance=reporter.advance,
            finish_phase=reporter.finish,
        )
        for brand in brands:
            brand.counts.update(coupon_counts[brand.code])

    if events:
        event_counts = build_events(
            db,
            [
                EventsBrand(
                    b.id,
                    b.code,
                    b.web_source_id,
                    buyers[b.code].numbers,
                    buyers[b.code].enroll_day,
                    catalogs[b.code],
                    p.hours,
                )
                for p, b in zip(BRANDS, brands, strict=True)
            ],
            seed=seed,
            start=start,
            end=end,
            total=events,
            start_phase=reporter.start,
            advance=reporter.advance,
            finish_phase=reporter.finish,
        )
        for brand in brands:
            brand.counts.update(event_counts[brand.code])

    with db.unit_of_work() as s:
        tenancy_repo = TenancyRepository(s)
        for brand in brands:
            # The service's member-number counter continues after the backfilled numbers.
            tenancy_repo.brand(brand.id).member_seq = brand.counts["members"]
            audit.record(
                s,
                actor=SYSTEM,
                action="demo.seeded",
                entity_type="brand",
                entity_id=brand.id,
                brand_id=brand.id,
                after={**brand.counts, "seed": seed, "months": months, "history_ends_at": end.isoformat()},
                note="history backfilled in bulk; no outbox events for historical rows",
            )
    return DemoWorld(seed, months, end, platform_key, admin, brands)


def _growth(days: list[date], kind: str) -> list[float]:
    """Daily volume factor: the retail calendar times a steady growth of the business."""
    n = len(days)
    return [day_factor(day, kind) * (0.75 + 0.5 * i / max(1, n - 1)) for i, day in enumerate(days)]
