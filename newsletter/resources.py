"""Where the bundled templates, demo roster and sample feeds live, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """A top-level folder of the project (``templates``, ``subscribers``).

    A wheel carries them under ``newsletter/_bundled/``; an editable install or a checkout
    reads them from the repository root.
    """
    for candidate in (_PACKAGE / "_bundled" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled folder {name!r} not found next to {_PACKAGE}")


def sample_dir() -> Path:
    """The sample feeds of the demo, shipped inside the package."""
    return _PACKAGE / "sample"
