"""`newsletter systemd`: print or install the systemd units (filled in by the systemd work)."""

from __future__ import annotations

import click


@click.command("systemd")
@click.option("--user", "user_units", is_flag=True, help="Units for the user's systemd.")
@click.option("--install", is_flag=True, help="Write the units instead of printing them.")
def systemd(user_units: bool, install: bool) -> int:
    """Print (or install) the systemd units for send, serve and run."""
    raise click.ClickException("not built yet")
