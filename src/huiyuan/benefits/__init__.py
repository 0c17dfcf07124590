"""Benefits (A8): what a member can be granted by a tier, a paid plan, a card or a campaign."""
