"""The member profile (B10): find a person, see them whole (record, identifiers, identity graph,
loyalty, orders), their behaviour timeline, and what sets them apart from their brand."""
