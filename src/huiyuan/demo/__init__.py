"""The demo world: a deterministic, seeded retail platform (three brands, stores, a catalogue,
members, two years of orders with refunds and consents) written in bulk for ``huiyuan demo`` and the
benchmarks. History is a backfill: it keeps the invariants the services keep but writes no outbox
events per historical row. Must not be imported by the application at request time."""
