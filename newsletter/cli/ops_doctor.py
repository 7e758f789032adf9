"""`newsletter doctor`: a checklist of everything the list needs, one mark per line.

The checks live in ``newsletter.doctor``; this prints them (or a JSON list) and exits 1
when a required one failed. A config that does not load is a checklist of one failed line.
"""

from __future__ import annotations

import json

import click
from rich.text import Text

from newsletter.cli.context import current, out

MARKS = {
    "ok": ("✓", "green"),
    "fail": ("✗", "bold red"),
    "warn": ("!", "yellow"),
    "skip": ("\u2013", "dim"),
}


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="The checklist as JSON.")
def doctor(as_json: bool) -> int:
    """Check the config, templates, database, sources, SMTP, DNS and base_url.

    Connects to the SMTP server (EHLO, TLS, AUTH) but sends nothing, and only reads the
    database. Exit 1 when a required check failed; warnings and skips do not count.
    """
    from newsletter.doctor import check_config, run_doctor

    state = current()
    first, config = check_config(lambda: state.config, state.config_path)
    checks = [first] if config is None else [first, *run_doctor(config)]
    failed = [c for c in checks if c.failed]
    if as_json:
        print(json.dumps([c.as_dict() for c in checks], ensure_ascii=False, indent=2))
        return 1 if failed else 0
    width = max(len(c.name) for c in checks)
    for c in checks:
        mark, style = MARKS[c.status]
        line = Text.assemble((mark, style), " ", (c.name.ljust(width), "bold"), "  ", c.detail)
        out.print(line, soft_wrap=True)
    warned = sum(c.status == "warn" for c in checks)
    if failed:
        out.print(Text(f"{len(failed)} required check(s) failed", style="bold red"))
    else:
        out.print(Text(f"All required checks passed ({warned} warning(s))", style="green"))
    return 1 if failed else 0
