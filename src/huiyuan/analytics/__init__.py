"""Analyses over the warehouse (B3, B13): written once with Ibis, run on DuckDB by default."""
