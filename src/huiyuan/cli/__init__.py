"""Command line (Typer + Rich): ``huiyuan serve | worker | demo | migrate | import | keys``."""
