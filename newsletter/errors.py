"""One exception tree for everything the user can be told about.

    NewsletterError                 base; carries ``hint`` for the user; exit code 1
    ├── ConfigError                 the config file is missing, unreadable or invalid
    ├── InputError                  bad user input: roster row, CLI argument, address
    │   └── RosterError             a roster file cannot be read at all
    ├── SourceError                 one source could not be fetched or parsed
    ├── StoreError                  the database cannot be opened, migrated or written
    ├── TokenError                  a signed token is invalid, expired or of another purpose
    ├── TemplateError               a template cannot be loaded, compiled or rendered
    ├── DeliveryError               sending failed
    │   └── SMTPUnavailableError    the SMTP server cannot be reached at all (exit 3)
    └── AlreadyRunningError         another send or run holds the run lock

The CLI prints ``str(error)`` (one line, with the hint) and maps the class to an exit code.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(NewsletterError):
    """The config file is missing, unreadable or does not validate."""


class InputError(NewsletterError):
    """Bad input from the user: a roster row, an address, an argument."""


class RosterError(InputError):
    """A roster file cannot be read at all (not one bad row: those are skipped)."""


class SourceError(NewsletterError):
    """One source could not be fetched or parsed; other sources go on."""


class StoreError(NewsletterError):
    """The database cannot be opened, migrated or written."""


class TokenError(NewsletterError):
    """A signed token is invalid, expired, or was made for another purpose."""


class TemplateError(NewsletterError):
    """A template cannot be found, compiled or rendered."""


class DeliveryError(NewsletterError):
    """Sending a message failed."""

    exit_code = 3


class SMTPUnavailableError(DeliveryError):
    """The SMTP server cannot be reached; the rest of the edition stays pending."""


class AlreadyRunningError(NewsletterError):
    """Another ``send`` or ``run`` holds the run lock; this one sends nothing."""
