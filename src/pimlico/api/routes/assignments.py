"""(To be written: the assignments operations.)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["assignments"])
