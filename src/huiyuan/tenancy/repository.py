"""Queries on brands and stores. Brands are not brand-owned rows, so a brand principal's view of the
brand table is narrowed here explicitly; stores go through the session's tenancy filter."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.kit.db import scope_of
from huiyuan.kit.errors import NotFound
from huiyuan.tenancy.models import Brand, Store


class TenancyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def brands(self) -> list[Brand]:
        stmt = select(Brand).order_by(Brand.id)
        scope = scope_of(self.session)
        if scope is not None and scope.brand_id is not None and not scope.platform:
            stmt = stmt.where(Brand.id == scope.brand_id)
        return list(self.session.scalars(stmt))

    def brand(self, brand_id: int) -> Brand:
        scope = scope_of(self.session)
        if (
            scope is not None
            and scope.brand_id is not None
            and scope.brand_id != brand_id
            and not scope.platform
        ):
            raise NotFound("No such brand.")
        brand = self.session.get(Brand, brand_id)
        if brand is None:
            raise NotFound("No such brand.")
        return brand

    def brand_by_code(self, code: str) -> Brand | None:
        return self.session.scalars(select(Brand).where(Brand.code == code)).one_or_none()

    def store_by_code(self, brand_id: int, code: str) -> Store | None:
        stmt = select(Store).where(Store.brand_id == brand_id, Store.code == code)
        return self.session.scalars(stmt).one_or_none()

    def store(self, store_id: int) -> Store | None:
        return self.session.scalars(select(Store).where(Store.id == store_id)).one_or_none()

    def stores(self, brand_id: int | None = None) -> list[Store]:
        stmt = select(Store).order_by(Store.id)
        if brand_id is not None:
            stmt = stmt.where(Store.brand_id == brand_id)
        return list(self.session.scalars(stmt))
