"""The demo catalogue of one brand: a category tree and ~hundreds of SKUs (styles × sizes) with
product brands, list prices in fen and a popularity weight per SKU (a few bestsellers, a long tail)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime

from huiyuan.demo.bulk import BulkWriter
from huiyuan.demo.reference import BrandProfile, Leaf
from huiyuan.orders.models import Category, Product

_ASCII = re.compile(r"^[A-Za-z0-9]+$")


@dataclass
class Sku:
    id: int
    sku: str
    name: str
    category_id: int
    list_fen: int
    weight: float


def _price_fen(rng: random.Random, low: int, high: int, cents: int) -> int:
    yuan = rng.randint(low, high)
    # Retail prices end in 9 (or 8 for the cheap items) once above a few dozen yuan.
    if yuan >= 50:
        yuan = yuan // 10 * 10 + 9
    return yuan * 100 + cents


def build_catalog(
    writer: BulkWriter, rng: random.Random, profile: BrandProfile, brand_id: int, at: datetime
) -> list[Sku]:
    """Write the brand's categories and products; returns the SKUs with their popularity weights."""
    cat_id = writer.next_id(Category)
    prod_id = writer.next_id(Product)
    cats: list[dict[str, object]] = []
    leaves: list[tuple[int, Leaf]] = []
    for branch in profile.tree:
        root_id = cat_id
        cat_id += 1
        cats.append(_cat(root_id, brand_id, None, branch.code, branch.name, branch.code, 1, at))
        for leaf in branch.leaves:
            cats.append(
                _cat(cat_id, brand_id, root_id, leaf.code, leaf.name, f"{branch.code}/{leaf.code}", 2, at)
            )
            leaves.append((cat_id, leaf))
            cat_id += 1

    skus: list[Sku] = []
    style = 0
    while len(skus) < profile.skus:
        leaf_id, leaf = leaves[style % len(leaves)]
        style += 1
        noun = rng.choice(leaf.nouns)
        base_name = f"{rng.choice(profile.adjectives)}{noun}"
        base = _price_fen(rng, leaf.price[0], leaf.price[1], leaf.cents)
        for idx, variant in enumerate(leaf.variants):
            suffix = variant if _ASCII.match(variant or "") else f"{idx + 1:02d}"
            code = f"{profile.prefix}-{leaf.code.upper()}-{style:04d}"
            sku = f"{code}-{suffix}" if variant else code
            price = base if profile.kind == "apparel" else base + base * idx // 4 // 100 * 100
            name = f"{base_name} {variant}".strip()
            skus.append(Sku(prod_id, sku, name, leaf_id, price, 0.0))
            prod_id += 1
    # Zipf-like popularity over a random ranking: a handful of bestsellers, a long tail.
    ranks = list(range(1, len(skus) + 1))
    rng.shuffle(ranks)
    for s, rank in zip(skus, ranks, strict=True):
        s.weight = 1.0 / rank**0.9

    writer.insert(Category, cats)
    product_brands = profile.product_brands
    writer.insert(
        Product,
        [
            {
                "id": s.id,
                "brand_id": brand_id,
                "sku": s.sku,
                "name": s.name,
                "product_brand": product_brands[(s.category_id + s.id // 7) % len(product_brands)],
                "category_id": s.category_id,
                "list_price": s.list_fen,
                "status": "active",
                "created_at": at,
                "updated_at": at,
            }
            for s in skus
        ],
    )
    return skus


def _cat(
    id_: int, brand_id: int, parent: int | None, code: str, name: str, path: str, level: int, at: datetime
) -> dict[str, object]:
    return {
        "id": id_,
        "brand_id": brand_id,
        "parent_id": parent,
        "code": code,
        "name": name,
        "path": path,
        "level": level,
        "created_at": at,
        "updated_at": at,
    }
