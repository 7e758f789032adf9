"""The ``[web]`` section of ``config.toml``: what ``newsletter serve`` allows and trusts."""

from __future__ import annotations

from pydantic import Field

from newsletter.config_delivery import Strict


class WebSection(Strict):
    """Abuse limits of the sign-up form and the proxy the app sits behind."""

    # sign-ups one client address may make per window (then 429)
    signups_per_ip: int = Field(default=5, ge=1, le=100_000)
    signup_window_seconds: int = Field(default=3600, ge=1, le=7 * 86400)
    # confirmation emails the whole site may send per hour (0: no cap): a flood from many
    # addresses cannot turn the list into a source of unwanted mail
    confirmations_per_hour: int = Field(default=500, ge=0)
    # how long a confirmation link works (the link also works only once)
    confirm_hours: int = Field(default=72, ge=1, le=24 * 14)
    # proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's
    # forwarded_allow_ips): the client address the per-IP limit counts comes from them
    forwarded_allow_ips: str = "127.0.0.1"
