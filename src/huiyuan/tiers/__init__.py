"""Member tiers (A5): levels, qualification, validity, tier changes and their distribution."""
