"""`newsletter doctor`: a checklist of everything the list needs (filled in by the doctor work)."""

from __future__ import annotations

import click


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="The checklist as JSON.")
def doctor(as_json: bool) -> int:
    """Check the config, templates, database, sources, SMTP, DNS and base_url."""
    raise click.ClickException("not built yet")
