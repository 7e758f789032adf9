"""newsletter: a self-hosted, personalised email digest of trending research papers."""

from __future__ import annotations

__version__ = "0.1.0"
