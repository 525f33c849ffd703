"""Pimlico's settings, read once from ``PIMLICO_*`` environment variables and passed in.

Nothing deeper in the code reads the environment: entry points build a ``Settings`` and hand
it down.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIMLICO_", secrets_dir=None, extra="ignore")

    database_url: str = Field(
        default="sqlite:///./pimlico.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    max_nesting_depth: int = Field(
        default=8,
        ge=1,
        le=32,
        description="How deep groups may nest (a user in G1 in G2 … in Gn: n ≤ this).",
    )
    decision_max_staleness: float = Field(
        default=1.0,
        ge=0.0,
        le=3600.0,
        description=(
            "Seconds a decision asked without at_least_revision may lag behind the store; "
            "authorization of Pimlico's own operations never lags."
        ),
    )
