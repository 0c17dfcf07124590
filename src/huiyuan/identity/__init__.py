"""OneID: identifiers of every channel matched into one person (B5–B8); see docs/oneid.md."""
