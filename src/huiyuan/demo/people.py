"""Demo members of one brand: Chinese names (Faker zh_CN), genders, birthdays, home cities, unique
phones, some e-mails and WeChat OpenIDs, enrollment channel and time, identifiers and consents.

Keeps the invariants of ``members.service``: member numbers are the brand prefix + 8 digits in
enrollment order, phone/e-mail are stored only as Fernet tokens with blind indexes, and each of them
(and each OpenID) has its ``member_identifiers`` row. Some people are members of several brands (same
phone), as in a real retail group.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from faker import Faker

from huiyuan.demo.bulk import BulkWriter
from huiyuan.demo.reference import (
    CITIES,
    EDUCATIONS,
    EMAIL_DOMAINS,
    INCOME_BANDS,
    INTERESTS,
    OCCUPATIONS,
    BrandProfile,
)
from huiyuan.kit import pii
from huiyuan.members.models import Consent, Member, MemberIdentifier

LOCAL = timedelta(hours=8)  # Asia/Shanghai has no daylight saving time
_PHONE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "173",
    "177",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "191",
    "198",
    "199",
)
_CITY_CUM = list(itertools.accumulate(c[3] for c in CITIES))


@dataclass
class Person:
    name: str
    gender: str
    birthday: date | None
    phone: str
    email: str | None
    city: int  # index into CITIES


@dataclass
class StoreRef:
    id: int
    code: str
    city: str  # city code


@dataclass
class Buyers:
    """What the order generator needs to know about a brand's members, in enrollment order."""

    ids: list[int] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    enroll_day: list[int] = field(default_factory=list)
    home_store: list[int | None] = field(default_factory=list)
    weight: list[float] = field(default_factory=list)


class PhoneBook:
    """Unique mainland mobile numbers across the whole demo."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def new(self) -> str:
        while True:
            phone = self.rng.choice(_PHONE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"
            if phone not in self.used:
                self.used.add(phone)
                return phone


class People:
    """Makes persons; brands after the first draw some of their members from earlier brands."""

    def __init__(self, rng: random.Random, faker: Faker, phones: PhoneBook) -> None:
        self.rng = rng
        self.faker = faker
        self.phones = phones
        self.made: list[Person] = []

    def new(self, female_share: float, age: tuple[int, int], today: date) -> Person:
        rng, fk = self.rng, self.faker
        female = rng.random() < female_share
        name = fk.last_name() + (fk.first_name_female() if female else fk.first_name_male())
        gender = "unknown" if rng.random() < 0.03 else ("female" if female else "male")
        birthday = None
        if rng.random() < 0.88:
            years = rng.triangular(age[0] - 4, age[1] + 8, (age[0] + age[1]) / 2)
            birthday = today - timedelta(days=int(years * 365.25) + rng.randrange(365))
        phone = self.phones.new()
        email = None
        if rng.random() < 0.3:
            email = f"{fk.user_name()}{len(self.made)}@{rng.choice(EMAIL_DOMAINS)}"
        city = bisect.bisect_right(_CITY_CUM, rng.random() * _CITY_CUM[-1])
        person = Person(name, gender, birthday, phone, email, city)
        self.made.append(person)
        return person


def _openid(rng: random.Random) -> str:
    return "o" + base64.urlsafe_b64encode(rng.getrandbits(162).to_bytes(21, "big")).decode()[:27]


def _weighted(pairs: tuple[tuple[str, int], ...]) -> tuple[list[str], list[int]]:
    return [p[0] for p in pairs], list(itertools.accumulate(p[1] for p in pairs))


def build_members(
    writer: BulkWriter,
    rng: random.Random,
    people: People,
    profile: BrandProfile,
    brand_id: int,
    count: int,
    *,
    stores: list[StoreRef],
    start: datetime,
    end: datetime,
    day_weights: list[float],
    advance: Callable[[int], None] | None = None,
) -> tuple[Buyers, dict[str, int]]:
    """Write ``count`` members with identifiers and consents; returns the buyers and row counts.

    ``start`` is local midnight of the first day (in UTC); ``day_weights`` has one weight per day.
    """
    days = len(day_weights)
    day_cum = list(itertools.accumulate(day_weights))
    channels, channel_cum = _weighted(profile.enroll_channels)
    earlier = list(people.made)
    taken: set[int] = set()
    today = (end + LOCAL).date()
    stores_by_city: dict[str, list[StoreRef]] = {}
    for s in stores:
        stores_by_city.setdefault(s.city, []).append(s)

    drafts: list[tuple[datetime, Person, str]] = []
    for _ in range(count):
        person = None
        if earlier and rng.random() < 0.12:
            pick = rng.randrange(len(earlier))
            if pick not in taken:
                taken.add(pick)
                person = earlier[pick]
        if person is None:
            person = people.new(profile.female_share, profile.age, today)
        if rng.random() < 0.2:
            # Existing members imported when the programme went live.
            day, channel = rng.randrange(min(14, days)), "import"
        else:
            day = bisect.bisect_right(day_cum, rng.random() * day_cum[-1])
            channel = channels[bisect.bisect_right(channel_cum, rng.random() * channel_cum[-1])]
        at = start + timedelta(days=day, seconds=rng.randrange(9 * 3600, 22 * 3600))
        drafts.append((min(at, end - timedelta(seconds=rng.randrange(60, 7200))), person, channel))
    # Member numbers follow enrollment order, like the service's counter.
    drafts.sort(key=lambda d: d[0])

    first_id = writer.next_id(Member)
    buyers = Buyers()
    members: list[dict[str, Any]] = []
    idents: list[dict[str, Any]] = []
    consents: list[dict[str, Any]] = []
    counts = {"members": 0, "identifiers": 0, "consents": 0}
    enc, bidx = pii.encrypt, pii.blind_index
    for n, (at, person, channel) in enumerate(drafts):
        member_id = first_id + n
        city_code, province, city, _w = CITIES[person.city]
        local_stores = stores_by_city.get(city_code) or stores
        home = rng.choice(local_stores) if rng.random() < 0.8 else rng.choice(stores)
        status = _status(rng)
        phone_token = enc(person.phone)
        phone_bidx = bidx("phone", person.phone)
        email_token = enc(person.email) if person.email else None
        email_bidx = bidx("email", person.email) if person.email else None
        closed_at = None
        if status == "closed":
            closed_at = min(at + timedelta(days=rng.randrange(1, 400)), end)
        referrer = None
        if channel == "referral" and n > 0:
            referrer = first_id + rng.randrange(n)
        extra = rng.random() < 0.4
        members.append(
            {
                "id": member_id,
                "brand_id": brand_id,
                "member_number": f"{profile.prefix}{n + 1:08d}",
                "status": status,
                "name": person.name,
                "gender": person.gender,
                "birthday": person.birthday,
                "phone_enc": phone_token,
                "phone_bidx": phone_bidx,
                "email_enc": email_token,
                "email_bidx": email_bidx,
                "province": province,
                "city": city,
                "occupation": rng.choice(OCCUPATIONS) if extra else None,
                "education": rng.choice(EDUCATIONS) if extra else None,
                "income_band": rng.choice(INCOME_BANDS) if extra else None,
                "interests": rng.sample(INTERESTS, rng.randint(1, 3)) if rng.random() < 0.3 else [],
                "enroll_channel": channel,
                "enroll_source": "go-live import" if channel == "import" else None,
                "enroll_store_id": home.id if channel == "store" else None,
                "referrer_member_id": referrer,
                "join_condition": "register",
                "enrolled_at": at,
                "custom": {},
                "closed_at": closed_at,
                "close_reason": "会员申请注销" if closed_at else None,
                "erased_at": None,
                "version": 1,
                "created_at": at,
                "updated_at": closed_at or at,
            }
        )
        idents.append(_ident(brand_id, member_id, "phone", phone_token, phone_bidx, "profile", at))
        if person.email and email_token and email_bidx:
            idents.append(_ident(brand_id, member_id, "email", email_token, email_bidx, "profile", at))
        openid = None
        if channel == "mini_program" or rng.random() < 0.35:
            openid = _openid(rng)
            idents.append(
                _ident(
                    brand_id,
                    member_id,
                    "wechat_openid",
                    enc(openid),
                    bidx("wechat_openid", openid),
                    "wechat",
                    at,
                )
            )
        consents.extend(_consents(rng, brand_id, member_id, at, end, channel, openid, person.email))

        buyers.ids.append(member_id)
        buyers.numbers.append(members[-1]["member_number"])
        buyers.enroll_day.append(int((at - start).total_seconds() // 86400))
        buyers.home_store.append(home.id)
        active = status in ("active", "frozen") and rng.random() > 0.12
        buyers.weight.append(rng.lognormvariate(0.0, 0.9) if active else 0.0)

        if len(members) >= 5000:
            _flush(writer, members, idents, consents, counts, advance)
    _flush(writer, members, idents, consents, counts, advance)
    return buyers, counts


def _flush(
    writer: BulkWriter,
    members: list[dict[str, Any]],
    idents: list[dict[str, Any]],
    consents: list[dict[str, Any]],
    counts: dict[str, int],
    advance: Callable[[int], None] | None,
) -> None:
    counts["members"] += len(members)
    counts["identifiers"] += len(idents)
    counts["consents"] += len(consents)
    writer.insert(Member, members)
    writer.insert(MemberIdentifier, idents)
    writer.insert(Consent, consents)
    writer.commit()
    if advance is not None:
        advance(len(members))
    members.clear()
    idents.clear()
    consents.clear()


def _status(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.965:
        return "active"
    if r < 0.975:
        return "frozen"
    if r < 0.985:
        return "closed"
    return "prospect"


def _ident(
    brand_id: int, member_id: int, type_: str, token: str, bidx: str, source: str, at: datetime
) -> dict[str, Any]:
    return {
        "brand_id": brand_id,
        "member_id": member_id,
        "type": type_,
        "value_enc": token,
        "value_bidx": bidx,
        "source": source,
        "verified": type_ == "phone",
        "created_at": at,
    }


def _consents(
    rng: random.Random,
    brand_id: int,
    member_id: int,
    at: datetime,
    end: datetime,
    channel: str,
    openid: str | None,
    email: str | None,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    evidence = {"enroll_channel": channel, "text_version": "2024-01"}

    def grant(purpose: str, via: str, granted: bool, when: datetime, source: str) -> None:
        rows.append(
            {
                "brand_id": brand_id,
                "member_id": member_id,
                "purpose": purpose,
                "channel": via,
                "granted": granted,
                "at": when,
                "source": source,
                "evidence": evidence if source == "enrollment" else {"via": source},
            }
        )

    if rng.random() < 0.62:
        grant("marketing", "sms", True, at, "enrollment")
        if rng.random() < 0.06:
            later = min(at + timedelta(days=rng.randrange(5, 300)), end)
            grant("marketing", "sms", False, later, "sms_unsubscribe")
    if openid and rng.random() < 0.7:
        grant("marketing", "wechat", True, at, "enrollment")
    if email and rng.random() < 0.5:
        grant("marketing", "email", True, at, "enrollment")
    if rng.random() < 0.55:
        grant("profiling", "all", True, at, "enrollment")
    return rows


def utc(day: date) -> datetime:
    """Midnight of a local day, in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) - LOCAL
