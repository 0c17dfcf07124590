"""Events (B1 tracking plan, B2 collection): sources and write keys, the tracking plan and its
violations, the Segment-compatible tracking API, the append-only event store and the identity feed
that OneID reads. See ``docs/events.md``."""
