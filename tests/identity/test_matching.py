"""Probabilistic matching: the Splink model measured on FEBRL, and the matching job on a brand
(auto-link above the threshold, queue for review below it, decisions)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from sqlalchemy import select

from huiyuan.identity import matching
from huiyuan.identity.linking import Ident
from huiyuan.identity.models import MatchProposal
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand
from tests.conftest import World
from tests.identity import febrl
from tests.identity.helpers import oneid_of, writer

needs_splink = pytest.mark.skipif(
    importlib.util.find_spec("splink") is None, reason="splink is not installed"
)


@needs_splink
@pytest.mark.parametrize("task", ["febrl3", "febrl4"])
def test_febrl_without_any_identifier(task: str) -> None:
    result = febrl.measure(task, use_fragment=False)
    assert result["precision"] >= 0.98 and result["recall"] >= 0.95 and result["f1"] >= 0.97, result


@needs_splink
@pytest.mark.slow
@pytest.mark.parametrize(("task", "fragment"), [("febrl3", True), ("febrl4", True)])
def test_febrl_measurements(task: str, fragment: bool) -> None:
    result = febrl.measure(task, use_fragment=fragment)
    assert result["precision"] >= 0.98 and result["recall"] >= 0.95, result


@needs_splink
def test_recordlinkage_stays_out_of_the_runtime() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith(("recordlinkage", "pandas"))]


def _people(db: Database, brand: int, rows: list[dict[str, Any]]) -> dict[str, int]:
    """One OneID per FEBRL record (its rec_id as a device id), with name, birthday and address seen."""
    with writer(db, brand) as w:
        for r in rows:
            node = w.ensure(Ident("device_id", r["unique_id"]), source="import")
            assert node is not None
            w.observe(
                node,
                {
                    "name": f"{r['given_name']} {r['surname']}",
                    "birthday": r["birthday"],
                    "address": r["street"],
                    "city": r["locality"],
                },
                source="import",
            )
    return {r["unique_id"]: oneid_of(db, brand, f"device_id:{r['unique_id']}") or 0 for r in rows}


def test_match_job_links_sure_pairs_and_queues_likely_ones(client: Any, world: World, db: Database) -> None:
    brand, h = world.brands[0].id, world.brands[0].headers
    rows = febrl.load("febrl4a.csv")[:240]
    rows[1] = {**rows[0], "unique_id": "copy-of-0"}
    rows[2] = {**rows[3], "unique_id": "near-3"}
    oneids = _people(db, brand, rows)
    records_seen: list[int] = []

    def scorer(records: list[dict[str, Any]], *, threshold: float) -> list[tuple[str, str, float]]:
        records_seen.append(len(records))
        if len(records_seen) == 1:  # one record per OneID with a name
            assert {r["unique_id"] for r in records} == {str(o) for o in oneids.values()}
        assert threshold == 0.9
        return [
            (str(oneids[rows[0]["unique_id"]]), str(oneids["copy-of-0"]), 0.999),
            (str(oneids[rows[3]["unique_id"]]), str(oneids["near-3"]), 0.95),
        ]

    result = matching.match_brand(world.db, brand_id=brand, actor=system_for_brand(brand), scorer=scorer)
    assert records_seen == [240] and result["auto_linked"] == 1 and result["queued"] == 1
    assert oneid_of(db, brand, "device_id:copy-of-0") == oneid_of(
        db, brand, f"device_id:{rows[0]['unique_id']}"
    )
    # queued, not linked, until someone decides
    pending = client.get("/api/v1/oneid/proposals", headers=h).json()["items"]
    assert len(pending) == 1 and pending[0]["probability"] == 0.95
    decided = client.post(
        "/api/v1/oneid/proposals/decide", json={"proposal_id": pending[0]["id"], "accept": True}, headers=h
    )
    assert decided.status_code == 200 and decided.json()["status"] == "accepted"
    assert oneid_of(db, brand, "device_id:near-3") == oneid_of(db, brand, f"device_id:{rows[3]['unique_id']}")
    changes = client.get("/api/v1/oneid/changes", headers=h).json()["items"]
    assert [c["kind"] for c in changes] == ["merge", "merge"]
    # running again proposes nothing new for pairs already decided or merged
    again = matching.match_brand(world.db, brand_id=brand, actor=system_for_brand(brand), scorer=scorer)
    assert records_seen[1] == 238 and again["already"] == 2
    with world.db.unit_of_work(write=False) as s:
        assert len(list(s.scalars(select(MatchProposal)))) == 1


@needs_splink
def test_match_job_runs_splink_on_a_brand(db: Database) -> None:
    from tests.factories import make_brand

    if db.engine.dialect.name != "sqlite":
        pytest.skip("Splink runs in DuckDB; both databases feed it in the stub-scorer test above")
    brand = make_brand(db, "alpha")
    rows = febrl.load("febrl4a.csv")[:230] + [
        dict(r, unique_id=r["unique_id"] + "-b") for r in febrl.load("febrl4b.csv")[:30]
    ]
    _people(db, brand, rows)
    result = matching.match_brand(db, brand_id=brand, actor=system_for_brand(brand))
    assert result["records"] == 260 and result["pairs"] >= 1, result
    assert result["auto_linked"] + result["queued"] >= 1
