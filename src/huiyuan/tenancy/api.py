"""Routes of this module are being built; the router is registered in ``huiyuan.routes``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
