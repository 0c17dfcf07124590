"""Models of this domain (registered in ``huiyuan.models``)."""

from __future__ import annotations
