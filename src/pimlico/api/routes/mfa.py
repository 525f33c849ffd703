"""(To be written: the mfa operations.)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["mfa"])
