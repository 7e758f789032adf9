"""The sending sections of ``config.toml``: [smtp], [delivery] and [dkim].

Kept apart from the rest of the config so the sending engine's knobs read in one place;
``DeliverySection.settings()`` turns them into the plain values the engine takes.
"""

from __future__ import annotations

from email.utils import parseaddr
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from newsletter.engine import DeliverySettings


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _plain_address(value: str | None) -> str | None:
    if value is None:
        return value
    _, addr = parseaddr(value)
    if "@" not in addr or addr != value.strip() or any(c in value for c in "\r\n\0 <>"):
        raise ValueError("expected a bare address such as bounces@example.org")
    return addr


class SMTPSection(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    timeout: float = Field(default=30.0, gt=0)
    data_timeout: float = Field(default=600.0, gt=0)
    ca_file: str | None = None
    envelope_from: str | None = None

    _bare_envelope = field_validator("envelope_from")(_plain_address)


class DeliverySection(Strict):
    connections: int = Field(default=4, ge=1, le=64)
    max_per_connection: int = Field(default=100, ge=1)
    max_per_second: float = Field(default=0, ge=0)
    max_per_hour: int = Field(default=0, ge=0)
    retries_per_run: int = Field(default=3, ge=0, le=20)
    retry_base_seconds: float = Field(default=2.0, ge=0)
    retry_max_seconds: float = Field(default=60.0, ge=0)
    max_attempts: int = Field(default=5, ge=1, le=100)
    max_connection_failures: int = Field(default=3, ge=1)
    bounce_after: int = Field(default=1, ge=1)
    lease_seconds: float = Field(default=900.0, ge=10)

    def settings(self) -> DeliverySettings:
        return DeliverySettings(
            connections=self.connections,
            max_per_connection=self.max_per_connection,
            max_per_second=self.max_per_second,
            max_per_hour=self.max_per_hour,
            retries_per_run=self.retries_per_run,
            retry_base=self.retry_base_seconds,
            retry_max=self.retry_max_seconds,
            max_attempts=self.max_attempts,
            max_connection_failures=self.max_connection_failures,
            bounce_after=self.bounce_after,
            lease_seconds=self.lease_seconds,
        )


DKIM_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
]


class DkimSection(Strict):
    selector: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]+$")
    key_file: str | None = None
    headers: list[str] = DKIM_HEADERS

    @field_validator("headers")
    @classmethod
    def _covers_unsubscribe(cls, value: list[str]) -> list[str]:
        names = {h.lower() for h in value}
        missing = {"from", "list-unsubscribe", "list-unsubscribe-post"} - names
        if missing:
            raise ValueError(f"must include {', '.join(sorted(missing))}")
        return value

    @property
    def enabled(self) -> bool:
        return self.key_file is not None
