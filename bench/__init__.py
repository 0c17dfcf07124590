"""Benchmarks of huiyuan: plain scripts that print one JSON object per figure (``python -m bench.run``).

Each figure names what was measured, its value and unit, and the context needed to compare runs
(rows, clients, cores, Python and SQLite versions). Features are judged against baselines measured in
the same run (e.g. order ingestion against a trivial endpoint of the same server)."""
