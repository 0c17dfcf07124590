"""Shared fixtures for job tests: the settings override and local HTTP receiver of the outbox tests."""

from tests.outbox.conftest import receiver, settings_env

__all__ = ["receiver", "settings_env"]
