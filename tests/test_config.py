"""Config loading: defaults, path resolution, secrets from env or files only."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.errors import ConfigError


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body)
    return path


def test_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    config = load_config(example)
    assert config.sources and config.topics
    assert config.newsletter.database == "var/newsletter.db"


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    config = load_config(
        _write(
            sub,
            '[newsletter]\ndatabase = "data/x.db"\n'
            '[[sources]]\nname = "a"\nkind = "feed"\nurl = "feeds/a.xml"\n',
        )
    )
    assert config.database_url() == f"sqlite:///{sub / 'data' / 'x.db'}"
    assert config.source_location(config.sources[0]) == str(sub / "feeds" / "a.xml")
    config = load_config(_write(sub, '[newsletter]\ndatabase = "postgresql://h/db"\n'))
    assert config.database_url() == "postgresql://h/db"


def test_secret_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(_write(tmp_path, '[newsletter]\nsecret_env = "MY_KEY"\n'))
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_KEY is not set"):
        config.secret()
    monkeypatch.setenv("MY_KEY", "short")
    with pytest.raises(ConfigError, match="too short"):
        config.secret()
    monkeypatch.setenv("MY_KEY", "long-enough-secret-value")
    assert config.secret() == "long-enough-secret-value"


def test_signing_keys_list_previous_keys_first_and_sign_with_the_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old-keys"
    old.write_text("file-key-one-0123456789\nfile-key-two-0123456789\n")
    old.chmod(0o600)
    config = load_config(
        _write(
            tmp_path,
            '[newsletter]\nsecret_env = "KEY"\nprevious_secrets_env = "OLD"\n'
            'previous_secrets_file = "old-keys"\n',
        )
    )
    monkeypatch.setenv("KEY", "current-key-0123456789")
    monkeypatch.setenv("OLD", "env-key-0123456789 current-key-0123456789")
    assert config.signing_keys() == [
        "file-key-one-0123456789",
        "file-key-two-0123456789",
        "env-key-0123456789",
        "current-key-0123456789",
    ]
    monkeypatch.delenv("OLD")
    assert config.signing_keys()[-1] == "current-key-0123456789"
    from newsletter.subscriptions import Signer

    token = Signer(["env-key-0123456789"]).make("unsubscribe", 7)
    monkeypatch.setenv("OLD", "env-key-0123456789")
    assert Signer(config.signing_keys()).read("unsubscribe", token) == 7


def test_secret_file_must_not_be_world_readable(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("a-secret-from-a-file-123\n")
    config = load_config(
        _write(
            tmp_path,
            '[newsletter]\nsecret_file = "key"\n[smtp]\nusername = "u"\npassword_file = "key"\n',
        )
    )
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by everyone"):
        config.secret()
    key.chmod(0o600)
    assert config.secret() == "a-secret-from-a-file-123"
    assert config.smtp_password() == "a-secret-from-a-file-123"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('[smtp]\npassword = "hunter2"\n', "unknown key smtp.password"),
        ('[newsletter]\nsender = "no address"\n', "newsletter.sender"),
        ('[newsletter]\nbase_url = "ftp://x"\n', "newsletter.base_url"),
        ('[newsletter]\ntimezone = "Mars/Olympus"\n', "newsletter.timezone"),
        ('[smtp]\nsecurity = "ssl"\n', "smtp.security"),
        (
            '[[topics]]\nid = "a"\nname = "A"\n[[topics]]\nid = "a"\nname = "B"\n',
            "topic ids must be unique",
        ),
        ('base_dir = "/"\n', "unknown key base_dir"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, body: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, body))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def _keys(model: type, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    out = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        if name == "base_dir":
            continue
        kind = field.annotation
        inner = getattr(kind, "__args__", (kind,))[0] if getattr(kind, "__args__", None) else kind
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out += _keys(kind, f"{prefix}{name}.")
        elif isinstance(inner, type) and issubclass(inner, BaseModel):
            out += _keys(inner, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_example_documents_every_key() -> None:
    """config.example.toml is the reference: every setting appears there, with a comment."""
    from newsletter.config import Config

    text = (Path(__file__).resolve().parents[1] / "config.example.toml").read_text()
    missing = []
    for key in _keys(Config):
        leaf = key.rsplit(".", 1)[-1]
        if not any(line.lstrip("# ").startswith(f"{leaf} =") for line in text.splitlines()):
            missing.append(key)
    assert missing == []


def test_a_database_password_comes_from_env_or_file_never_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql+psycopg://newsletter@db.example.org/news"
    with pytest.raises(ConfigError, match="no password in the URL"):
        load_config(_write(tmp_path, '[newsletter]\ndatabase = "postgresql://u:pw@h/db"\n'))
    config = load_config(
        _write(tmp_path, f'[newsletter]\ndatabase = "{url}"\ndatabase_password_env = "DB_PW"\n')
    )
    monkeypatch.delenv("DB_PW", raising=False)
    with pytest.raises(ConfigError, match="DB_PW, which is not set"):
        config.database_url()
    monkeypatch.setenv("DB_PW", "s3cret/with@odd:chars")
    from sqlalchemy import make_url

    made = make_url(config.database_url())
    assert made.password == "s3cret/with@odd:chars" and made.host == "db.example.org"
    secret = tmp_path / "pw"
    secret.write_text("from-a-file-pw\n")
    secret.chmod(0o600)
    config = load_config(
        _write(tmp_path, f'[newsletter]\ndatabase = "{url}"\ndatabase_password_file = "pw"\n')
    )
    assert make_url(config.database_url()).password == "from-a-file-pw"
