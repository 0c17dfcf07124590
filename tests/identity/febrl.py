"""Precision, recall and F1 of OneID's probabilistic matching (``identity.matching.score``, Splink
with DuckDB) on the FEBRL data sets: febrl3 (deduplication, 5,000 records) and febrl4 (linkage,
5,000 + 5,000 records). ``python -m tests.identity.febrl`` prints one JSON line per measurement.

The true pairs come from the record ids (``rec-<n>-org`` / ``rec-<n>-dup-<k>`` are one person).
FEBRL's fields map onto the matching record: given name, surname, date of birth, street number,
address_1 (street), suburb (locality), postcode; ``soc_sec_id`` stands in for a phone fragment
(an identifier typed with errors), measured with and without it.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

from huiyuan.identity.matching import score

DATA = Path(__file__).parent / "data"
THRESHOLD = 0.9
_PERSON = re.compile(r"rec-(\d+)-")


def load(name: str) -> list[dict[str, Any]]:
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for r in rows:
        dob = r["date_of_birth"]
        out.append(
            {
                "unique_id": r["rec_id"],
                "given_name": r["given_name"],
                "surname": r["surname"],
                "birthday": f"{dob[:4]}-{dob[4:6]}-{dob[6:8]}" if len(dob) == 8 else None,
                "street_number": r["street_number"],
                "street": r["address_1"],
                "locality": r["suburb"],
                "postcode": r["postcode"],
                "phone_tail": r["soc_sec_id"],
            }
        )
    return out


def person(rec_id: str) -> str:
    match = _PERSON.match(rec_id)
    assert match, rec_id
    return match.group(1)


def true_pairs_dedupe(records: list[dict[str, Any]]) -> set[frozenset[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for r in records:
        groups[person(r["unique_id"])].append(r["unique_id"])
    return {frozenset(p) for ids in groups.values() for p in combinations(sorted(ids), 2)}


def true_pairs_link(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> set[frozenset[str]]:
    by_person = {person(r["unique_id"]): r["unique_id"] for r in right}
    return {
        frozenset((r["unique_id"], by_person[p])) for r in left if (p := person(r["unique_id"])) in by_person
    }


def measure(task: str, *, use_fragment: bool, threshold: float = THRESHOLD) -> dict[str, Any]:
    started = time.perf_counter()
    if task == "febrl3":
        records = load("febrl3.csv")
        truth = true_pairs_dedupe(records)
        predicted = score(records, threshold=threshold, use_fragment=use_fragment)
    else:
        left, right = load("febrl4a.csv"), load("febrl4b.csv")
        truth = true_pairs_link(left, right)
        predicted = score(left, right, threshold=threshold, use_fragment=use_fragment)
    found = {frozenset((a, b)) for a, b, _ in predicted}
    tp = len(found & truth)
    precision = tp / len(found) if found else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "task": task,
        "fields": "names, birthday, address" + (", id fragment" if use_fragment else ""),
        "threshold": threshold,
        "true_pairs": len(truth),
        "predicted": len(found),
        "true_positives": tp,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str]) -> None:
    tasks = argv or ["febrl3", "febrl4"]
    for task in tasks:
        for use_fragment in (True, False):
            print(json.dumps(measure(task, use_fragment=use_fragment)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
