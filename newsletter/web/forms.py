"""The web forms as pydantic models: what each field may hold, and one clear line when it
does not (the page shows it beside the form)."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import FormData

from newsletter.errors import InputError
from newsletter.subscriptions import normalise_email

MAX_KEYWORDS = 20
MAX_KEYWORD = 60
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_LABELS = {
    "email": "Email address",
    "topics": "Topics",
    "frequency": "How often",
    "keywords": "Your own keywords",
    "timezone": "Time zone",
    "send_hour": "Time of day",
    "send_weekday": "Day of the week",
}


class _Form(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SignupForm(_Form):
    email: str = Field(max_length=320)
    topics: tuple[str, ...] = ()
    frequency: Literal["daily", "weekly"] = "daily"
    website: str = ""  # the honeypot: people never see it, form-filling bots fill it

    @field_validator("email")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return normalise_email(value)
        except InputError:
            raise ValueError("enter a valid email address, like name@example.org") from None


class PreferencesForm(_Form):
    csrf: str = Field(max_length=500)
    topics: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    frequency: Literal["daily", "weekly"] = "daily"
    timezone: str = Field(default="UTC", max_length=64)
    paused: bool = False
    send_hour: int | None = Field(default=None, ge=0, le=23)
    send_weekday: (
        Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] | None
    ) = None

    @field_validator("send_hour", "send_weekday", mode="before")
    @classmethod
    def _default(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("keywords", mode="before")
    @classmethod
    def _split(cls, value: object) -> tuple[str, ...]:
        text = value[0] if isinstance(value, list | tuple) and value else value
        if not isinstance(text, str):
            return ()
        words: list[str] = []
        for raw in text.split(","):
            word = " ".join(_CONTROL.sub(" ", raw).split())
            if not word:
                continue
            if len(word) > MAX_KEYWORD:
                raise ValueError(f"each keyword at most {MAX_KEYWORD} characters")
            if word.lower() not in (w.lower() for w in words):
                words.append(word)
        if len(words) > MAX_KEYWORDS:
            raise ValueError(f"at most {MAX_KEYWORDS} keywords")
        return tuple(words)


def parse_form(
    model: type[_Form], form: FormData, topic_ids: Collection[str], zones: Collection[str] = ()
) -> _Form:
    """The form's fields as ``model``; raises InputError naming the field and what it
    expects. Repeated fields (checkboxes) become tuples; anything unknown is ignored."""
    data: dict[str, object] = {}
    for key in model.model_fields:
        values = form.getlist(key)
        if not values:
            continue
        if any(not isinstance(v, str) for v in values):
            raise InputError(f"{_LABELS.get(key, key)}: expected text, not a file")
        many = key in ("topics", "keywords")
        data[key] = tuple(values) if many else values[-1]
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "form"
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "literal_error":
            message = "choose daily or weekly" if field == "frequency" else "choose from the list"
        raise InputError(f"{_LABELS.get(field, field)}: {message}") from None
    topics = getattr(parsed, "topics", ())
    unknown = [t for t in topics if t not in topic_ids]
    if unknown or len(set(topics)) != len(topics):
        raise InputError("Topics: choose from the topics listed")
    zone = getattr(parsed, "timezone", None)
    if zone is not None and zones and zone not in zones:
        raise InputError("Time zone: choose one from the list")
    return parsed
