"""Operator console: server-rendered Jinja2 + HTMX pages, Chinese and English."""
