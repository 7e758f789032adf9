"""Subscriptions: purpose-bound signed tokens and the rules for reading rosters.

Tokens carry the subscriber's id, never the address, and are signed with a salt per
purpose, so an unsubscribe token can never confirm an address or open preferences.
Several keys may be given: the last signs, all verify (key rotation).
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from itsdangerous import BadSignature, URLSafeTimedSerializer

from newsletter.errors import InputError, RosterError, TokenError
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.schedule import WEEKDAYS

PURPOSES = ("confirm", "unsubscribe", "preferences", "archive", "csrf")
# The roster columns `import` reads and `export` writes; from an export, only a suppressed
# status is carried over (unsubscribe always wins, across installations).
ROSTER_FIELDS = (
    "email",
    "name",
    "status",
    "topics",
    "keywords",
    "authors",
    "exclude",
    "frequency",
    "timezone",
    "paused",
    "send_hour",
    "send_weekday",
)


class Signer:
    """Makes and checks tokens for one purpose each; invalid tokens all fail the same way."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self._keys = list(keys)
        self._serializers: dict[str, URLSafeTimedSerializer] = {}

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        found = self._serializers.get(purpose)
        if found is None:
            if purpose not in PURPOSES:
                raise ValueError(f"unknown token purpose {purpose!r}")
            found = URLSafeTimedSerializer(self._keys, salt=f"newsletter.{purpose}")
            self._serializers[purpose] = found
        return found

    def make(self, purpose: str, subscriber_id: int) -> str:
        return str(self._serializer(purpose).dumps(subscriber_id))

    def make_text(self, purpose: str, value: str) -> str:
        """A token carrying a string (a confirmation nonce) rather than a subscriber id."""
        return str(self._serializer(purpose).dumps(value))

    def read_text(self, purpose: str, token: str, max_age: int | None = None) -> str:
        value = self._load(purpose, token, max_age)
        if not isinstance(value, str):
            raise TokenError("this link is invalid or has expired")
        return value

    def read(self, purpose: str, token: str, max_age: int | None = None) -> int:
        value = self._load(purpose, token, max_age)
        if not isinstance(value, int):
            raise TokenError("this link is invalid or has expired")
        return value

    def _load(self, purpose: str, token: str, max_age: int | None) -> object:
        try:
            return self._serializer(purpose).loads(token, max_age=max_age)
        except BadSignature:
            raise TokenError("this link is invalid or has expired") from None


def subscriber_record(sub: Subscriber) -> dict[str, Any]:
    """A subscriber as roster fields (lists as lists), for show, list and export."""
    return {
        "email": sub.email,
        "name": sub.name,
        "status": sub.status.value,
        "topics": list(sub.topics),
        "keywords": list(sub.keywords),
        "authors": list(sub.authors),
        "exclude": list(sub.exclude),
        "frequency": sub.frequency,
        "timezone": sub.timezone,
        "paused": sub.paused,
        "send_hour": sub.send_hour,
        "send_weekday": None if sub.send_weekday is None else WEEKDAYS[sub.send_weekday],
    }


def normalise_email(value: str) -> str:
    """A valid address in its normal form (domain lower-cased, IDN allowed), or InputError."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InputError(f"invalid email address {value!r}: {exc}") from None
    return str(result.normalized).lower()


@dataclass(slots=True)
class RosterRow:
    line: int
    subscriber: Subscriber


@dataclass(slots=True)
class Roster:
    """Parsed rows and the rows that were refused, each with its line number."""

    rows: list[RosterRow] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


def _as_list(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(";") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise ValueError("expected a list of strings (in CSV: values separated by ';')")


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise ValueError(f"paused {value!r}: expected true or false")


def _send_time(hour: Any, weekday: Any) -> tuple[int | None, int | None]:
    h: int | None = None
    if hour not in (None, ""):
        text = str(hour).strip()
        if not text.isdigit() or not 0 <= int(text) <= 23:
            raise ValueError(f"send_hour {hour!r}: expected an hour from 0 to 23")
        h = int(text)
    w: int | None = None
    if weekday not in (None, ""):
        name = str(weekday).strip().lower()
        if name not in WEEKDAYS:
            raise ValueError(f"send_weekday {weekday!r}: expected a day such as monday")
        w = WEEKDAYS.index(name)
    return h, w


def _row(
    record: dict[str, Any], status: SubscriberStatus, topic_ids: set[str] | None
) -> Subscriber:
    unknown = set(record) - set(ROSTER_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    email = normalise_email(str(record.get("email") or ""))
    topics = _as_list(record.get("topics"))
    if topic_ids is not None:
        missing = [t for t in topics if t not in topic_ids]
        if missing:
            raise ValueError(f"unknown topic(s) {', '.join(missing)}")
    for key in ("email", "name", "frequency", "timezone"):
        if key in record and not isinstance(record[key], str):
            raise ValueError(f"{key}: expected text")
    frequency = str(record.get("frequency") or "daily")
    if frequency not in ("daily", "weekly"):
        raise ValueError(f"frequency {frequency!r}: expected daily or weekly")
    zone = str(record.get("timezone") or "UTC")
    try:
        ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(
            f"timezone {zone!r}: expected an IANA zone such as Europe/Berlin"
        ) from None
    paused = _as_bool(record.get("paused", False))
    send_hour, send_weekday = _send_time(record.get("send_hour"), record.get("send_weekday"))
    given = str(record.get("status") or "")
    if given in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
        status = SubscriberStatus(given)  # unsubscribe always wins, across installations
    return Subscriber(
        id=0,
        email=email,
        name=str(record.get("name") or "").strip()[:200],
        status=status,
        topics=topics,
        keywords=_as_list(record.get("keywords")),
        authors=_as_list(record.get("authors")),
        exclude=_as_list(record.get("exclude")),
        frequency=frequency,
        timezone=zone,
        paused=paused,
        send_hour=send_hour,
        send_weekday=send_weekday,
    )


def read_roster(path: Path, *, pending: bool = False, topic_ids: set[str] | None = None) -> Roster:
    """Read a CSV (header ``email,name,topics,keywords``) or TOML (``[[subscribers]]``) roster."""
    status = SubscriberStatus.PENDING if pending else SubscriberStatus.ACTIVE
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise RosterError(f"cannot read roster {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RosterError(f"roster {path} is not UTF-8 text") from None
    roster = Roster()
    records: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RosterError(f"roster {path}: invalid TOML: {exc}") from None
        entries = data.get("subscribers")
        if not isinstance(entries, list) or set(data) - {"subscribers"}:
            raise RosterError(f"roster {path}: expected [[subscribers]] tables and nothing else")
        lines = _toml_table_lines(text)
        for i, entry in enumerate(entries):
            line = lines[i] if i < len(lines) else 0
            if not isinstance(entry, dict):
                roster.invalid.append(f"{path}:{line}: expected a table")
                continue
            records.append((line, entry))
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        if "email" not in header:
            raise RosterError(
                f"roster {path}: the first line must be a header with an email column",
                hint="e.g. email,name,topics,keywords",
            )
        for record in reader:
            if None in record:
                roster.invalid.append(f"{path}:{reader.line_num}: more cells than header columns")
                continue
            records.append(
                (
                    reader.line_num,
                    {k: v for k, v in record.items() if v not in (None, "")}
                    | {"email": record.get("email") or ""},
                )
            )
    else:
        raise RosterError(f"roster {path}: unknown format", hint="use a .csv or .toml file")
    seen: set[str] = set()
    for line, record in records:
        try:
            sub = _row(record, status, topic_ids)
        except (ValueError, InputError) as exc:
            roster.invalid.append(f"{path}:{line}: {exc}")
            continue
        if sub.email in seen:
            roster.invalid.append(f"{path}:{line}: {sub.email} appears twice")
            continue
        seen.add(sub.email)
        roster.rows.append(RosterRow(line, sub))
    return roster


def _toml_table_lines(text: str) -> list[int]:
    return [
        n
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip().startswith("[[subscribers]]")
    ]
