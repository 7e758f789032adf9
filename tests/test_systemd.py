"""`newsletter systemd`: the unit texts (pure renderer), the command, and systemd's own check."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import CLI, write_config
from newsletter.cli.ops_systemd import data_folder, on_calendar
from newsletter.config import load_config
from newsletter.systemd_units import UnitSettings, exec_line, render_units

BASE = UnitSettings(
    command=("/opt/newsletter/.venv/bin/newsletter",),
    config_path="/etc/newsletter/config.toml",
    data_dir="/var/lib/newsletter",
    env_file="/etc/newsletter/newsletter.env",
)
USER = replace(
    BASE,
    system=False,
    config_path="/home/ada/newsletter/config.toml",
    data_dir="/home/ada/newsletter/var",
    env_file="/home/ada/.config/newsletter/newsletter.env",
)
NAMES = {
    "newsletter-send.service",
    "newsletter-send@.service",
    "newsletter-send.timer",
    "newsletter-serve.service",
    "newsletter-run.service",
}
SERVICES = sorted(NAMES - {"newsletter-send.timer"})
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
    "User": "newsletter",
    "Group": "newsletter",
    "CapabilityBoundingSet": "",
}
# Need root, or unprivileged user namespaces, in a user manager (systemd.exec(5)).
NOT_FOR_USER = [
    "User",
    "Group",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ReadWritePaths",
    "CapabilityBoundingSet",
]


def settings(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit (comments and section headers skipped)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def one(text: str, key: str) -> str:
    values = settings(text).get(key, [])
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


# ---- the renderer ------------------------------------------------------------------------


def test_every_unit_is_rendered() -> None:
    assert set(render_units(BASE)) == NAMES
    assert set(render_units(USER)) == NAMES


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize(("key", "value"), sorted(HARDENING.items()))
def test_system_services_are_hardened(name: str, key: str, value: str) -> None:
    assert one(render_units(BASE)[name], key) == value


@pytest.mark.parametrize("name", SERVICES)
def test_the_data_folder_is_the_only_writable_path(name: str) -> None:
    text = render_units(BASE)[name]
    assert settings(text)["ReadWritePaths"] == ["/var/lib/newsletter"]
    assert "ReadOnlyPaths" not in settings(text)


@pytest.mark.parametrize("name", SERVICES)
def test_paths_are_filled_in(name: str) -> None:
    text = render_units(BASE)[name]
    assert one(text, "ExecStart").startswith("/opt/newsletter/.venv/bin/newsletter ")
    assert one(text, "Environment") == '"NEWSLETTER_CONFIG=/etc/newsletter/config.toml"'
    assert one(text, "EnvironmentFile") == "-/etc/newsletter/newsletter.env"
    assert one(text, "WorkingDirectory") == "/etc/newsletter"


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("newsletter-send.service", "send"),
        ("newsletter-send@.service", "send --worker"),
        ("newsletter-serve.service", "serve --host 127.0.0.1 --port 8000"),
        ("newsletter-run.service", "run"),
    ],
)
def test_commands(name: str, command: str) -> None:
    expected = f"/opt/newsletter/.venv/bin/newsletter {command}"
    assert one(render_units(BASE)[name], "ExecStart") == expected


def test_send_is_a_oneshot_and_partial_runs_stay_failures() -> None:
    send = render_units(BASE)["newsletter-send.service"]
    assert one(send, "Type") == "oneshot"
    assert "SuccessExitStatus" not in settings(send)  # exit 3 shows in systemctl --failed
    assert "Install" not in send  # started by the timer
    assert one(send, "TimeoutStopSec") == "660"
    assert one(send, "KillSignal") == "SIGTERM"


@pytest.mark.parametrize(
    ("name", "stop"),
    [("newsletter-serve.service", None), ("newsletter-run.service", "900")],
)
def test_long_running_services(name: str, stop: str | None) -> None:
    text = render_units(replace(BASE, stop_timeout=900))[name]
    assert one(text, "Restart") == "on-failure"
    assert one(text, "WantedBy") == "multi-user.target"
    assert settings(text).get("TimeoutStopSec", [None]) == [stop]


def test_the_timer() -> None:
    timer = render_units(replace(BASE, on_calendar="*-*-* 07:15:00 Europe/Berlin"))
    text = timer["newsletter-send.timer"]
    assert one(text, "Persistent") == "true"
    assert one(text, "OnCalendar") == "*-*-* 07:15:00 Europe/Berlin"
    assert one(text, "RandomizedDelaySec") == "5min"
    assert one(text, "WantedBy") == "timers.target"
    assert one(render_units(BASE)["newsletter-send.timer"], "OnCalendar") == "*-*-* 06:00:00"


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("key", NOT_FOR_USER)
def test_user_units_need_no_privileges(name: str, key: str) -> None:
    assert key not in settings(render_units(USER)[name])


@pytest.mark.parametrize("name", SERVICES)
def test_user_units_keep_the_unprivileged_hardening(name: str) -> None:
    text = render_units(USER)[name]
    for key in ("NoNewPrivileges", "RestrictAddressFamilies", "SystemCallArchitectures", "UMask"):
        assert one(text, key) == HARDENING[key]
    assert "network-online.target" not in text  # a system target
    assert one(text, "Environment") == '"NEWSLETTER_CONFIG=/home/ada/newsletter/config.toml"'


def test_user_long_running_units_start_with_the_session() -> None:
    units = render_units(USER)
    for name in ("newsletter-serve.service", "newsletter-run.service"):
        assert one(units[name], "WantedBy") == "default.target"


@pytest.mark.parametrize(
    "field",
    ["config_path", "data_dir", "working_dir", "command", "read_paths"],
)
def test_files_under_a_home_folder_stay_readable(field: str) -> None:
    path = "/home/ada/thing"
    value: Any = [path] if field in ("command", "read_paths") else path
    text = render_units(replace(BASE, **{field: value}))["newsletter-serve.service"]
    assert one(text, "ProtectHome") == "read-only"


def test_the_environment_file_is_read_by_systemd_itself() -> None:
    text = render_units(replace(BASE, env_file="/root/newsletter.env"))["newsletter-run.service"]
    assert one(text, "ProtectHome") == "yes"  # read before the sandbox is set up


@pytest.mark.parametrize(
    ("changes", "key", "expected"),
    [
        ({"data_dir": "/srv/my data"}, "ReadWritePaths", '"/srv/my data"'),
        ({"data_dir": "/srv/it's"}, "ReadWritePaths", '"/srv/it\'s"'),
        ({"data_dir": "/srv/100%"}, "ReadWritePaths", "/srv/100%%"),
        ({"config_path": "/srv/my data/c.toml"}, "WorkingDirectory", "/srv/my data"),
        ({"config_path": "/srv/a b/c.toml"}, "Environment", '"NEWSLETTER_CONFIG=/srv/a b/c.toml"'),
        ({"config_path": "/srv/50%/c.toml"}, "Environment", '"NEWSLETTER_CONFIG=/srv/50%%/c.toml"'),
        ({"env_file": "/etc/my env/n.env"}, "EnvironmentFile", "-/etc/my env/n.env"),
        (
            {"command": ("/opt/my app/bin/python", "-m", "newsletter")},
            "ExecStart",
            '"/opt/my app/bin/python" -m newsletter send',
        ),
        ({"command": ("/opt/$HOME/newsletter",)}, "ExecStart", "/opt/$$HOME/newsletter send"),
        ({"command": ("/opt/a;b/newsletter",)}, "ExecStart", '"/opt/a;b/newsletter" send'),
    ],
)
def test_quoting(changes: dict[str, Any], key: str, expected: str) -> None:
    text = render_units(replace(BASE, **changes))["newsletter-send.service"]
    assert one(text, key) == expected


def test_exec_line_quotes_each_word() -> None:
    assert exec_line(["/bin/x", "a b", "", "50%"]) == '/bin/x "a b" "" 50%%'


@pytest.mark.parametrize(
    "changes",
    [
        {"data_dir": "/srv/a\nProtectSystem=no"},
        {"config_path": "/etc/new\nsletter/config.toml"},
        {"env_file": "/etc/x\r.env"},
        {"working_dir": "/srv/tab\there"},
        {"data_dir": "/srv/back\\slash"},
        {"data_dir": '/srv/"quoted"'},
        {"data_dir": "/srv/nul\0"},
        {"data_dir": "/srv/nel\x85"},
        {"data_dir": "/srv/ls\u2028"},
        {"data_dir": "/srv/trailing "},
        {"data_dir": "relative/var"},
        {"env_file": "newsletter.env"},
        {"command": ("newsletter",)},
        {"command": ()},
        {"command": ("/usr/bin/python3", "-m", "news\nletter")},
        {"read_paths": ("/etc/key\n",)},
        {"host": "127.0.0.1 --reload"},
        {"port": 0},
        {"on_calendar": "daily\nExecStartPre=/bin/sh"},
        {"user": "root\nUser=root"},
        {"user": "Bad User"},
        {"stop_timeout": 0},
        {"data_dir": "/srv/\udcff"},
    ],
)
def test_refuses_what_systemd_cannot_hold(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        render_units(replace(BASE, **changes))


def test_no_value_can_add_a_line() -> None:
    for text in render_units(replace(BASE, data_dir="/srv/my data", host="::1")).values():
        for line in text.splitlines():
            assert not line or line.startswith(("#", "[")) or "=" in line


# ---- values from the config --------------------------------------------------------------


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("var/test.db", "{base}/var"),
        ("/srv/nl/db.sqlite", "/srv/nl"),
        ("sqlite:////srv/nl/db.sqlite", "/srv/nl"),
        ("sqlite:///rel/db.sqlite", "{base}/rel"),
        ("sqlite:///:memory:", "{base}/var"),
        ("postgresql://db.example/newsletter", "{base}/var"),
    ],
)
def test_data_folder(tmp_path: Path, database: str, expected: str) -> None:
    path = write_config(tmp_path, 2525)
    text = path.read_text(encoding="utf-8").replace('"var/test.db"', f'"{database}"')
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert data_folder(config) == Path(expected.format(base=tmp_path.resolve()))
    if "://" not in database or database.startswith("sqlite:////"):
        assert config.lock_path().parent == data_folder(config)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("06:00", "*-*-* 06:00:00 Europe/Berlin"),
        ("7:05:09", "*-*-* 07:05:09 Europe/Berlin"),
        ("Mon..Fri *-*-* 05:30", "Mon..Fri *-*-* 05:30"),
    ],
)
def test_on_calendar(at: str, expected: str) -> None:
    assert on_calendar(at, "Europe/Berlin") == expected


# ---- the command -------------------------------------------------------------------------


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path, 2525)


def units_of(stdout: str) -> dict[str, str]:
    """The ``# ---- name`` blocks of the printed output."""
    blocks = stdout.split("# ---- ")[1:]
    return {b.split("\n", 1)[0]: b.split("\n", 1)[1] for b in blocks}


def test_prints_every_unit(cli: CLI, config_path: Path) -> None:
    code, stdout, stderr = cli("--config", config_path, "systemd")
    assert (code, stderr) == (0, "")
    units = units_of(stdout)
    assert set(units) == NAMES
    send = units["newsletter-send.service"]
    assert one(send, "ReadWritePaths") == str(config_path.parent / "var")
    assert one(send, "Environment") == f'"NEWSLETTER_CONFIG={config_path}"'
    assert one(send, "EnvironmentFile") == "-/etc/newsletter/newsletter.env"
    assert one(send, "User") == "newsletter"
    assert one(send, "TimeoutStopSec") == "650"  # data_timeout 600 + 4 x timeout 5 + 30
    assert one(send, "ExecStart").split()[-1] == "send"
    assert Path(one(send, "ExecStart").split()[0]).is_absolute()
    assert one(units["newsletter-send.timer"], "OnCalendar") == "*-*-* 06:00:00 UTC"


def test_options(cli: CLI, config_path: Path, tmp_path: Path) -> None:
    code, stdout, _ = cli(
        "--config",
        config_path,
        "systemd",
        "--host",
        "::1",
        "--port",
        "8080",
        "--at",
        "07:30",
        "--env-file",
        tmp_path / "secrets.env",
    )
    assert code == 0
    units = units_of(stdout)
    assert one(units["newsletter-serve.service"], "ExecStart").endswith(
        "serve --host ::1 --port 8080"
    )
    assert one(units["newsletter-send.timer"], "OnCalendar") == "*-*-* 07:30:00 UTC"
    assert one(units["newsletter-run.service"], "EnvironmentFile") == f"-{tmp_path}/secrets.env"


def test_user_units(
    cli: CLI, config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    code, stdout, _ = cli("--config", config_path, "systemd", "--user")
    assert code == 0
    for name, text in units_of(stdout).items():
        assert "User=" not in text, name
    serve = units_of(stdout)["newsletter-serve.service"]
    assert one(serve, "EnvironmentFile") == f"-{tmp_path}/xdg/newsletter/newsletter.env"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "25:00"], "not a time of day"),
        (["--host", "a b"], "not a host name"),
        (["--env-file", "/etc/x\ny.env"], "cannot hold"),
    ],
)
def test_bad_input_is_one_line(cli: CLI, config_path: Path, args: list[str], message: str) -> None:
    code, stdout, stderr = cli("--config", config_path, "systemd", *args)
    assert code == 1 and stdout == ""
    assert message in stderr and stderr.startswith("error: ")
    assert len(stderr.strip().splitlines()) == 1


def test_refuses_a_data_folder_with_a_newline(cli: CLI, tmp_path: Path) -> None:
    folder = tmp_path / "news\nletter"
    folder.mkdir()
    code, _, stderr = cli("--config", write_config(folder, 2525), "systemd")
    assert code == 1 and "cannot write the units" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_install_writes_then_keeps_then_refuses(
    cli: CLI, config_path: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "units"
    code, stdout, _ = cli("--config", config_path, "systemd", "--install", "--prefix", prefix)
    assert code == 0
    assert {p.name for p in prefix.iterdir()} == NAMES
    assert stdout.count("(written)") == 5
    assert "systemctl daemon-reload" in stdout and "enable --now newsletter-send.timer" in stdout
    printed = units_of(cli("--config", config_path, "systemd")[1])
    for name, text in printed.items():
        assert (prefix / name).read_text(encoding="utf-8") + "\n" == text
        assert (prefix / name).stat().st_mode & 0o777 == 0o644

    code, stdout, _ = cli("--config", config_path, "systemd", "--install", "--prefix", prefix)
    assert code == 0 and stdout.count("(unchanged)") == 5

    changed = prefix / "newsletter-serve.service"
    changed.write_text("[Service]\nExecStart=/bin/true\n", encoding="utf-8")
    (prefix / "newsletter-run.service").unlink()
    code, stdout, stderr = cli("--config", config_path, "systemd", "--install", "--prefix", prefix)
    assert code == 1 and "exists and differs" in stderr and "--force" in stderr
    assert changed.read_text(encoding="utf-8") == "[Service]\nExecStart=/bin/true\n"
    assert not (prefix / "newsletter-run.service").exists()  # refused before writing any

    code, stdout, _ = cli(
        "--config", config_path, "systemd", "--install", "--prefix", prefix, "--force"
    )
    assert code == 0 and "(replaced)" in stdout and stdout.count("(written)") == 1
    assert changed.read_text(encoding="utf-8") + "\n" == printed["newsletter-serve.service"]


def test_user_install_goes_to_the_user_folder(
    cli: CLI, config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    code, stdout, _ = cli("--config", config_path, "systemd", "--user", "--install")
    assert code == 0
    assert {p.name for p in (tmp_path / "xdg/systemd/user").iterdir()} == NAMES
    assert "systemctl --user daemon-reload" in stdout and "enable-linger" in stdout


def test_install_into_an_unwritable_folder(cli: CLI, config_path: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    code, _, stderr = cli(
        "--config", config_path, "systemd", "--install", "--prefix", blocker / "x"
    )
    assert code == 1 and stderr.startswith("error: cannot write")


# ---- systemd's own check -----------------------------------------------------------------

ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def verify(folder: Path, user: bool, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if user:  # the user manager wants a runtime folder, even offline
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
    files = sorted(str(p) for p in folder.iterdir())
    args = [str(ANALYZE), "verify", "--man=no", *(["--user"] if user else []), *files]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)


@needs_systemd
@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
@pytest.mark.parametrize("folder", ["plain", "with space"])
def test_systemd_analyze_verify_accepts_them(
    cli: CLI, tmp_path: Path, user: bool, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify parses every setting (an unknown key or a bad value is a warning naming the
    file) and checks that ExecStart= exists: the units point at this venv's newsletter.
    It does not check that User= exists, nor the sandbox (nothing is started)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    base = tmp_path / folder
    base.mkdir()
    config = write_config(base, 2525)
    prefix = tmp_path / "units"
    args = ["--user"] if user else []
    assert cli("--config", config, "systemd", "--install", "--prefix", prefix, *args)[0] == 0
    result = verify(prefix, user, tmp_path)
    if user and "Failed to initialize manager" in result.stderr:
        pytest.skip(f"no user manager can be set up here: {result.stderr.strip()}")
    ours = [line for line in result.stderr.splitlines() if "newsletter-" in line]
    assert ours == [], result.stderr
    assert result.returncode == 0, result.stderr


@needs_systemd
def test_verify_would_catch_a_bad_setting(tmp_path: Path) -> None:
    """The check above is not vacuous: systemd-analyze names a broken line of our units."""
    text = render_units(replace(BASE, command=(str(shutil.which("true")),)))
    folder = tmp_path / "units"
    folder.mkdir()
    broken = text["newsletter-serve.service"].replace(
        "ProtectSystem=strict", "ProtectSystem=sideways"
    )
    (folder / "newsletter-serve.service").write_text(broken, encoding="utf-8")
    result = verify(folder, False, tmp_path)
    assert "newsletter-serve.service" in result.stderr and "sideways" in result.stderr
