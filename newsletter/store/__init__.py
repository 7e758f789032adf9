"""The store layer: the only place that speaks SQL."""

from __future__ import annotations

from newsletter.store.store import Store

__all__ = ["Store"]
