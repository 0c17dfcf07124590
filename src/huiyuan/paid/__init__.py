"""Paid membership (A6): plan categories and levels a brand sells, and members' subscriptions to them."""
