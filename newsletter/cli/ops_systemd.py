"""`newsletter systemd`: print or install the systemd units for send, serve and run.

The texts come from ``newsletter.systemd_units``; this module works out the values from the
loaded config (the executable, the config and data paths, the stop timeout, the time zone)
and writes the files, never replacing a different one without ``--force``.
"""

from __future__ import annotations

import contextlib
import math
import os
import pwd
import re
import shlex
import shutil
import sys
from pathlib import Path

import click

from newsletter.cli.context import current, out
from newsletter.config import Config
from newsletter.errors import InputError
from newsletter.systemd_units import UnitSettings, render_units

SYSTEM_DIR = Path("/etc/systemd/system")
SYSTEM_ENV_FILE = Path("/etc/newsletter/newsletter.env")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def newsletter_command() -> list[str]:
    """This installation's CLI: the script beside the running Python, on PATH, or ``-m``."""
    beside = Path(sys.executable).parent / "newsletter"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    found = shutil.which("newsletter")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "newsletter"]


def data_folder(config: Config) -> Path:
    """The SQLite database's folder (its journal and the run lock live there too)."""
    db = config.newsletter.database
    if "://" not in db:
        return config.resolve(db).parent
    if db.startswith("sqlite:///") and not db.endswith(":memory:"):
        # Store.open makes a relative sqlite:/// path relative to the working folder,
        # which the units set to the config's folder, as resolve does.
        return config.resolve(db.removeprefix("sqlite:///")).parent
    return config.resolve("var")  # a server database: only the run lock is kept here


def stop_timeout(config: Config) -> int:
    """Long enough for the messages in flight to finish after SIGTERM: one transaction's
    longest wait (the config's own lease check: data_timeout + 4 x timeout), plus 30 s."""
    return math.ceil(config.smtp.data_timeout + 4 * config.smtp.timeout) + 30


def on_calendar(at: str, timezone: str) -> str:
    """``HH:MM[:SS]`` as a daily ``OnCalendar=`` in the config's time zone; else as given."""
    clock = _CLOCK.match(at.strip())
    if not clock:
        return at
    hour, minute, second = int(clock[1]), int(clock[2]), int(clock[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise InputError(f"--at {at!r} is not a time of day", hint="use HH:MM, e.g. 06:00")
    return f"*-*-* {hour:02d}:{minute:02d}:{second:02d} {timezone}"


def _read_paths(config: Config) -> list[str]:
    nl, smtp = config.newsletter, config.smtp
    given = [
        nl.secret_file,
        nl.previous_secrets_file,
        nl.templates_dir,
        smtp.password_file,
        smtp.ca_file,
        config.dkim.key_file,
    ]
    return [str(config.resolve(p)) for p in given if p]


def _secret_names(config: Config) -> list[str]:
    nl = config.newsletter
    names = [] if nl.secret_file else [nl.secret_env]
    names += [n for n in (nl.previous_secrets_env, config.smtp.password_env) if n]
    return names


def _install(units: dict[str, str], folder: Path, force: bool) -> list[str]:
    """Write every unit into folder; refuses (before writing any) to replace a different one."""
    plan: list[tuple[Path, str, str]] = []
    for name, text in units.items():
        path = folder / name
        try:
            old = path.read_text(encoding="utf-8") if path.exists() or path.is_symlink() else None
        except (OSError, UnicodeDecodeError) as exc:
            old = f"unreadable: {exc}"
        if old == text:
            plan.append((path, text, "unchanged"))
        elif old is None:
            plan.append((path, text, "written"))
        elif not force:
            raise InputError(
                f"{path} exists and differs from the generated unit; nothing written",
                hint="compare it with `newsletter systemd`, then use --force to replace it",
            )
        else:
            plan.append((path, text, "replaced"))
    done = []
    for path, text, status in plan:
        if status != "unchanged":
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                folder.mkdir(parents=True, exist_ok=True)
                tmp.write_text(text, encoding="utf-8")
                tmp.chmod(0o644)
                os.replace(tmp, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                raise InputError(
                    f"cannot write {path}: {exc.strerror}",
                    hint="run as root, or use --user or --prefix DIR",
                ) from None
        done.append(f"{path} ({status})")
    return done


def _next_steps(s: UnitSettings, secrets: list[str]) -> list[str]:
    q = shlex.quote
    ctl = "systemctl" if s.system else "systemctl --user"
    steps = []
    if s.system:
        try:
            pwd.getpwnam(s.user)
        except KeyError:
            steps.append(
                f"useradd --system --user-group --home-dir {q(s.data_dir)} "
                f"--shell /usr/sbin/nologin {s.user}"
            )
        steps.append(f"install -d -o {s.user} -g {s.user} -m 0700 {q(s.data_dir)}")
    else:
        steps.append(f"mkdir -p {q(s.data_dir)}")
    names = " and ".join(f"{n}=..." for n in secrets) or "the secrets"
    steps += [
        f"test -e {q(s.env_file)} || install -D -m 0600 /dev/null {q(s.env_file)}",
        f"# then put {names} in {q(s.env_file)}",
        f"{ctl} daemon-reload",
        f"{ctl} enable --now newsletter-send.timer newsletter-serve.service",
        f"# or the scheduler instead of the timer: {ctl} enable --now newsletter-run.service",
        f"# or N send workers on one edition (PostgreSQL, any hosts): "
        f"{ctl} start newsletter-send@{{1..4}}.service",
    ]
    if not s.system:
        steps.append('loginctl enable-linger "$USER"  # to run them while you are logged out')
    return steps


@click.command("systemd")
@click.option("--user", "user_units", is_flag=True, help="Units for the user's systemd.")
@click.option("--install", is_flag=True, help="Write the units instead of printing them.")
@click.option("--force", is_flag=True, help="With --install: replace units that differ.")
@click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --install: write here [default: /etc/systemd/system, or "
    "~/.config/systemd/user with --user].",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The secrets as VAR=value lines [default: /etc/newsletter/newsletter.env, or "
    "~/.config/newsletter/newsletter.env with --user].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="For newsletter serve.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--at",
    default="06:00",
    show_default=True,
    help="When the timer sends: HH:MM in the config's time zone, or an OnCalendar= value.",
)
def systemd(
    user_units: bool,
    install: bool,
    force: bool,
    prefix: Path | None,
    env_file: Path | None,
    host: str,
    port: int,
    at: str,
) -> int:
    """Print (or install) the systemd units for send (a daily timer), serve and run."""
    state = current()
    config = state.config
    if env_file is None:
        env_file = _config_home() / "newsletter/newsletter.env" if user_units else SYSTEM_ENV_FILE
    settings = UnitSettings(
        command=newsletter_command(),
        config_path=str(state.config_path.expanduser().resolve()),
        data_dir=str(data_folder(config)),
        env_file=str(env_file.expanduser().absolute()),
        system=not user_units,
        host=host,
        port=port,
        on_calendar=on_calendar(at, config.newsletter.timezone),
        stop_timeout=stop_timeout(config),
        read_paths=_read_paths(config),
    )
    try:
        units = render_units(settings)
    except ValueError as exc:
        raise InputError(
            f"cannot write the units: {exc}", hint="use paths without such characters"
        ) from None
    if not install:
        for name, text in units.items():
            click.echo(f"# ---- {name}\n{text}")
        return 0
    folder = prefix or (_config_home() / "systemd" / "user" if user_units else SYSTEM_DIR)
    for line in _install(units, folder.expanduser().absolute(), force):
        out.print(line, markup=False, soft_wrap=True)
    out.print("Next:", markup=False)
    for step in _next_steps(settings, _secret_names(config)):
        out.print(f"  {step}", markup=False, soft_wrap=True)
    return 0
