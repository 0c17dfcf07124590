"""Cross-cutting building blocks every domain uses: database, errors, scope, clock, crypto.

The kit knows nothing of any domain; domains import from it, never the other way round.
"""
