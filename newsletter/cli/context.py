"""What every command shares: the consoles, the run state, opening the store."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from newsletter.collect import CollectRow, collect, make_fetcher, source_specs
from newsletter.config import Config, load_config
from newsletter.rank.semantic import Encoder, load_encoder
from newsletter.store import Store
from newsletter.subscriptions import Signer

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@dataclass
class State:
    config_path: Path
    verbose: bool
    now: datetime
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def current() -> State:
    state = click.get_current_context().find_root().obj
    assert isinstance(state, State)
    return state


@contextmanager
def open_store(config: Config) -> Iterator[Store]:
    store = Store.open(config.database_url())
    try:
        yield store
    finally:
        store.close()


def collect_now(config: Config, now: datetime, store: Store) -> list[CollectRow]:
    """Fetch every source once into the store (what `collect` and `send` start with)."""
    fetcher = make_fetcher(config)
    try:
        return collect(store, source_specs(config), fetcher, now, config.holidays(now.date()))
    finally:
        fetcher.close()


def encoder_for(config: Config) -> Encoder | None:
    """The semantic model when configured and installed (an edge: loading takes seconds)."""
    return load_encoder() if config.ranking.semantic == "auto" else None


def signing(config: Config) -> tuple[Signer, str]:
    """The token signer (every key verifies, the newest signs) and the current key."""
    keys = config.signing_keys()
    return Signer(keys), keys[-1]


def print_json_lines(rows: Sequence[Any]) -> None:
    for row in rows:
        print(json.dumps(row, ensure_ascii=False, default=str))
