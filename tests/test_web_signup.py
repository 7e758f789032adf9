"""The web app end to end: sign-up (double opt-in), confirmation, one-click unsubscribe,
preferences and the archive, under a real uvicorn server on 127.0.0.1, over a real SQLite
file, with confirmation emails sent to a real (local) SMTP server."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email import message_from_string, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from smtp_faults import assert_conformant
from sqlalchemy import select, update

from conftest import NOW, SECRET, write_config
from newsletter.cli import run
from newsletter.config import load_config
from newsletter.errors import TokenError
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.smtp_server import LocalSMTPServer
from newsletter.store import Store
from newsletter.store import schema as t
from newsletter.subscriptions import Signer
from newsletter.web import SECURITY_HEADERS, create_app
from newsletter.web.build import build_site

EMAIL_BASE = "https://digest.test.example"  # base_url in write_config: links in emails
OLD_KEY = "old-key-0123456789"
TOPICS = ("llm", "speech", "vision", "robotics")  # the sample config's topic ids
GENEROUS = "[web]\nsignups_per_ip = 100000\n"  # most tests sign up more than 5 times
INVALID = "This link is invalid or has expired."
SENT = "Check your inbox"
DEADLINE = 10.0  # seconds to wait for a confirmation email to arrive (readiness, not timing)


def checked(response: httpx.Response) -> httpx.Response:
    """What every response of the app must be: never a redirect, no cookie, and all the
    security headers."""
    headers = response.headers
    assert "location" not in headers, (response.request.url, headers.get("location"))
    assert "set-cookie" not in headers
    assert response.status_code not in (301, 302, 303, 307, 308)
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    for name in SECURITY_HEADERS:
        assert name in headers, name
    return response


def answer(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.text


def alerts(page: str) -> list[str]:
    """The error lines a form page shows (role=alert), as text."""
    return [html.unescape(m) for m in re.findall(r'role="alert"[^>]*>(.*?)</p>', page)]


@dataclass
class Web:
    """One running app: its address, store, SMTP server, config and a settable clock."""

    base: str
    store: Store
    smtp: LocalSMTPServer
    config: Path
    clock: list[datetime]
    client: httpx.Client
    signer: Signer = field(default_factory=lambda: Signer([SECRET]))
    _barriers: int = 0

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return checked(self.client.get(self.base + path, **kw))

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return checked(self.client.post(self.base + path, **kw))

    def subscribe(self, email: str, **fields: Any) -> httpx.Response:
        return self.post("/subscribe", data={"email": email, **fields})

    def advance(self, delta: timedelta) -> None:
        self.clock[0] += delta

    def sub(self, email: str) -> Subscriber:
        found = self.store.subscriber(email=email)
        assert found is not None, email
        return found

    def active(self, email: str, **kw: Any) -> Subscriber:
        """An active subscriber, straight into the store."""
        assert self.store.upsert_subscriber(Subscriber(0, email, **kw), NOW) == "added"
        return self.sub(email)

    def nonces(self, subscriber_id: int) -> list[str]:
        c = t.confirmations
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(c.c.nonce).where(c.c.subscriber_id == subscriber_id))
            return [str(r.nonce) for r in rows]

    def emails_to(self, address: str) -> list[EmailMessage]:
        return [parse_email(r.data) for r in self.smtp.received if r.rcpt_tos == (address,)]

    def wait_for_email(self, address: str, count: int = 1) -> EmailMessage:
        """The latest email to ``address`` once ``count`` have arrived (sent after the
        response, by a background task)."""
        deadline = time.monotonic() + DEADLINE
        while len(found := self.emails_to(address)) < count:
            assert time.monotonic() < deadline, f"no email to {address} arrived"
            time.sleep(0.01)  # waiting for readiness, not measuring time
        assert len(found) == count, found
        return found[-1]

    def barrier(self) -> None:
        """Sign up a fresh address and wait for its email: a send scheduled by an earlier
        request would have started before this one, so an email still missing is missing."""
        self._barriers += 1
        address = f"barrier{self._barriers}@example.org"
        assert answer(self.subscribe(address))[0] == 200
        self.wait_for_email(address)

    def recipients(self) -> list[str]:
        return [r.rcpt_tos[0] for r in self.smtp.received if "barrier" not in r.rcpt_tos[0]]


def parse_email(raw: bytes) -> EmailMessage:
    """A received message; decoded first, as its headers may hold UTF-8 (SMTPUTF8), which
    the bytes parser would turn into surrogates."""
    msg = message_from_string(raw.decode("utf-8"), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def html_of(msg: EmailMessage) -> str:
    body = msg.get_body(("html",))
    assert body is not None
    return str(body.get_content())


def confirm_path(msg: EmailMessage) -> str:
    """The confirmation link of an email, as a path on the local server."""
    links: list[str] = re.findall(r"https://\S+", text_of(msg))
    confirm = [u for u in links if u.startswith(f"{EMAIL_BASE}/confirm/")]
    assert len(confirm) == 1, links
    return confirm[0].removeprefix(EMAIL_BASE)


def unsubscribe_path(msg: EmailMessage) -> str:
    header = str(msg["List-Unsubscribe"])
    https = header.split(",")[0].strip().strip("<>")
    assert https.startswith(f"{EMAIL_BASE}/unsubscribe/"), header
    return https.removeprefix(EMAIL_BASE)


def token_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


Factory = Callable[..., Web]


@pytest.fixture
def make_web(tmp_path: Path) -> Iterator[Factory]:
    """Starts the app (once per test) over a fresh database, SMTP server and clock; every
    email the app sent must be standards-clean."""
    servers: list[LocalSMTPServer] = []
    with ExitStack() as stack:

        def make(web: str = GENEROUS, keys: Sequence[str] = (SECRET,)) -> Web:
            smtp = LocalSMTPServer(smtputf8=True)
            smtp.start()
            stack.callback(smtp.stop)
            servers.append(smtp)
            config = write_config(tmp_path, smtp.port, extra=web)
            loaded = load_config(config)
            store = Store.open(loaded.database_url())
            stack.callback(store.close)
            box = [NOW]
            app = create_app(build_site(loaded, store, Signer(list(keys)), lambda: box[0]))
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
            )
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()

            def stop() -> None:
                server.should_exit = True
                thread.join(timeout=10)

            stack.callback(stop)
            deadline = time.monotonic() + 10
            while not server.started:
                assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
                time.sleep(0.01)  # waiting for readiness, not measuring time
            port = server.servers[0].sockets[0].getsockname()[1]
            client = httpx.Client(trust_env=False, follow_redirects=False, timeout=10)
            stack.callback(client.close)
            return Web(f"http://127.0.0.1:{port}", store, smtp, config, box, client)

        yield make
        for smtp in servers:  # the checker reads headers as ASCII: UTF-8 ones checked apart
            assert_conformant([r for r in smtp.received if r.rcpt_tos[0].isascii()])


@pytest.fixture
def web(make_web: Factory) -> Web:
    return make_web()


# --- the form, the stylesheet, health, unknown routes ---------------------------------------


@pytest.mark.parametrize("path", ["/", "/subscribe"])
def test_subscribe_form(web: Web, path: str) -> None:
    r = web.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert re.search(r'<form method="post" action="/subscribe"', page)
    assert re.search(r'<input type="email" id="email" name="email"', page)
    boxes = re.findall(r'<input type="checkbox" name="topics" value="([^"]+)"', page)
    assert tuple(boxes) == TOPICS
    radios = re.findall(r'<input type="radio" name="frequency" value="([^"]+)"', page)
    assert radios == ["daily", "weekly"]
    assert re.search(r'<input type="radio" name="frequency" value="daily" checked>', page)
    assert re.search(r'<input type="text" id="website" name="website"', page)  # the honeypot
    assert not alerts(page)


def test_stylesheet_health_and_unknown_routes(web: Web) -> None:
    css = web.get("/site.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "{" in css.text
    health = web.get("/healthz")
    assert health.status_code == 200 and health.text == "ok"
    assert web.get("/no-such-page").status_code == 404
    assert checked(web.client.put(web.base + "/subscribe")).status_code == 405


@pytest.mark.parametrize(
    "path", ["/subscribe/", "/healthz/", "/confirm/abc/", "/unsubscribe/abc/", "/archive/x/y/"]
)
def test_a_trailing_slash_is_not_redirected(web: Web, path: str) -> None:
    """No redirect, not even to add or drop a slash: a Host header cannot send anyone
    off the site."""
    r = web.get(path, headers={"host": "evil.example"})
    assert r.status_code == 404


# --- sign-up -------------------------------------------------------------------------------


def test_sign_up_sends_one_confirmation_and_leaves_the_subscriber_pending(web: Web) -> None:
    weird = "Zq<b>Xj-PAYLOAD-7731</b>"
    r = web.subscribe(
        "Newbie@Example.ORG",
        topics=["speech", "vision"],
        frequency="weekly",
        nickname=weird,
        name=weird,
        website="",
    )
    assert r.status_code == 200 and SENT in r.text
    sub = web.sub("newbie@example.org")
    assert sub.status is SubscriberStatus.PENDING
    assert sub.topics == ("speech", "vision") and sub.frequency == "weekly"
    assert sub.name == ""
    assert len(web.nonces(sub.id)) == 1

    msg = web.wait_for_email("newbie@example.org")
    assert str(msg["Message-ID"]).startswith("<confirm.")
    assert msg["To"].addresses[0].addr_spec == "newbie@example.org"
    assert msg["Precedence"] is None
    assert msg["List-Unsubscribe"] is not None
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw = web.smtp.received[0].data
    for text in (raw.decode("utf-8", "replace"), text_of(msg), html_of(msg), str(msg)):
        assert "PAYLOAD" not in text and "Zq" not in text
    assert web.signer.read_text("confirm", token_of(confirm_path(msg))) == web.nonces(sub.id)[0]
    assert web.signer.read("unsubscribe", token_of(unsubscribe_path(msg))) == sub.id
    web.barrier()
    assert web.recipients() == ["newbie@example.org"]


def test_every_kind_of_address_gets_the_same_answer(web: Web) -> None:
    assert web.subscribe("pending@example.org").status_code == 200
    web.wait_for_email("pending@example.org")
    active = web.active("active@example.org", topics=("llm",))
    for email in ("unsub@example.org", "bounced@example.org", "forgotten@example.org"):
        web.active(email, topics=("llm",))
    assert web.store.unsubscribe_id(web.sub("unsub@example.org").id, NOW)
    assert web.store.set_subscriber_status("bounced@example.org", SubscriberStatus.BOUNCED, NOW)
    assert web.store.forget("forgotten@example.org", NOW)

    addresses = [
        "new@example.org",
        "pending@example.org",
        "active@example.org",
        "unsub@example.org",
        "bounced@example.org",
        "forgotten@example.org",
    ]
    answers = {
        email: answer(web.subscribe(email, topics=["speech", "vision"], frequency="weekly"))
        for email in addresses
    }
    assert len(set(answers.values())) == 1, answers
    status, page = answers["new@example.org"]
    assert status == 200 and SENT in page

    web.barrier()
    # only the new address got an email; the pending one none within 24 hours of its first
    assert sorted(web.recipients()) == ["new@example.org", "pending@example.org"]
    assert len(web.emails_to("pending@example.org")) == 1
    assert len(web.nonces(web.sub("pending@example.org").id)) == 1
    # a pending sign-up takes the new choices; an active subscriber's are untouched
    assert web.sub("pending@example.org").topics == ("speech", "vision")
    after = web.sub("active@example.org")
    assert after == active and after.topics == ("llm",) and after.frequency == "daily"
    assert web.sub("unsub@example.org").status is SubscriberStatus.UNSUBSCRIBED
    assert web.sub("bounced@example.org").status is SubscriberStatus.BOUNCED
    assert web.store.subscriber(email="forgotten@example.org") is None
    for email in ("active@example.org", "unsub@example.org", "bounced@example.org"):
        assert web.nonces(web.sub(email).id) == []


def test_a_pending_address_gets_another_email_after_24_hours(web: Web) -> None:
    web.subscribe("slow@example.org")
    first = web.wait_for_email("slow@example.org")
    web.advance(timedelta(hours=23))
    web.subscribe("slow@example.org")
    web.barrier()
    assert len(web.emails_to("slow@example.org")) == 1
    web.advance(timedelta(hours=2))
    web.subscribe("slow@example.org")
    second = web.wait_for_email("slow@example.org", count=2)
    assert confirm_path(second) != confirm_path(first)
    assert len(web.nonces(web.sub("slow@example.org").id)) == 2


BAD_INPUTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing email", {"topics": "llm"}, "Email address", "required"),
    ("empty email", {"email": ""}, "Email address", "valid email"),
    ("not an address", {"email": "not-an-address"}, "Email address", "valid email"),
    ("no dot in domain", {"email": "a@b"}, "Email address", "valid email"),
    ("400 characters", {"email": "a" * 388 + "@example.org"}, "Email address", "320"),
    ("unknown topic", {"email": "x@example.org", "topics": "cooking"}, "Topics", "choose"),
    (
        "duplicate topic",
        {"email": "x@example.org", "topics": ["llm", "llm"]},
        "Topics",
        "choose",
    ),
    ("hourly", {"email": "x@example.org", "frequency": "hourly"}, "How often", "daily"),
]


@pytest.mark.parametrize(
    ("data", "label", "says"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_sign_up_input_shows_the_form_with_one_error(
    web: Web, data: dict[str, Any], label: str, says: str
) -> None:
    r = web.post("/subscribe", data=data)
    assert r.status_code == 400
    assert re.search(r'<input type="email" id="email" name="email"', r.text)
    errors = alerts(r.text)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{label}: ") and says in errors[0], errors
    assert 'aria-invalid="true"' in r.text
    assert web.store.subscribers() == []


def test_a_refused_sign_up_keeps_what_was_entered(web: Web) -> None:
    typed = '<b>"ada"@example'
    r = web.post("/subscribe", data={"email": typed, "topics": ["llm", "nope"]})
    assert r.status_code == 400
    assert 'value="&lt;b&gt;&#34;ada&#34;@example"' in r.text  # escaped, not markup
    r = web.post(
        "/subscribe", data={"email": "not-an-address", "topics": ["llm"], "frequency": "weekly"}
    )
    assert 'value="not-an-address"' in r.text
    assert 'value="llm" checked' in r.text and 'value="weekly" checked' in r.text


def test_a_file_upload_is_refused_with_the_form(web: Web) -> None:
    r = web.post(
        "/subscribe",
        data={"frequency": "daily"},
        files={"email": ("address.txt", b"someone@example.org", "text/plain")},
    )
    assert r.status_code == 400
    assert re.search(r'<input type="email" id="email" name="email"', r.text)
    errors = alerts(r.text)
    assert len(errors) == 1 and "file" in errors[0], errors
    assert web.store.subscribers() == []


def test_too_many_fields_are_refused_with_the_form(web: Web) -> None:
    fields = [("email", "many@example.org")] + [(f"f{n}", "x") for n in range(120)]
    r = web.post(
        "/subscribe",
        content=urlencode(fields).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400
    assert re.search(r'<input type="email" id="email" name="email"', r.text)
    assert len(alerts(r.text)) == 1
    assert web.store.subscribers() == []


def test_a_multipart_form_without_files_is_accepted(web: Web) -> None:
    r = web.post(
        "/subscribe", files={"email": (None, "multi@example.org"), "topics": (None, "robotics")}
    )
    assert r.status_code == 200 and SENT in r.text
    assert web.sub("multi@example.org").topics == ("robotics",)
    web.wait_for_email("multi@example.org")


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("用户@例子.广告", "用户@例子.广告"),
        ("jose\u0301@Example.ORG", "josé@example.org"),  # decomposed é: stored as NFC
        ("  José@EXAMPLE.org ", "josé@example.org"),
    ],
)
def test_internationalised_addresses_are_accepted_and_normalised(
    web: Web, typed: str, stored: str
) -> None:
    r = web.subscribe(typed, topics="vision")
    assert r.status_code == 200 and SENT in r.text
    sub = web.sub(stored)
    assert sub.status is SubscriberStatus.PENDING and sub.topics == ("vision",)
    assert [s.email for s in web.store.subscribers()] == [stored]
    msg = web.wait_for_email(stored)
    assert web.smtp.received[0].rcpt_tos == (stored,)
    assert msg["To"].addresses[0].addr_spec == stored
    assert str(msg["Message-ID"]).startswith("<confirm.") and msg["Precedence"] is None
    assert web.signer.read("unsubscribe", token_of(unsubscribe_path(msg))) == sub.id


def test_the_honeypot_answers_as_usual_and_does_nothing(web: Web) -> None:
    normal = web.subscribe("person@example.org")
    bot = web.subscribe("bot@example.org", website="https://spam.example", topics="llm")
    assert answer(bot) == answer(normal) and bot.status_code == 200
    assert web.store.subscriber(email="bot@example.org") is None
    web.barrier()
    assert web.recipients() == ["person@example.org"]


def test_sign_ups_per_client_address_are_limited(make_web: Factory) -> None:
    web = make_web("[web]\nsignups_per_ip = 3\n")
    for n in range(3):
        assert web.subscribe(f"p{n}@example.org").status_code == 200
    r = web.subscribe("p3@example.org")
    assert r.status_code == 429 and r.headers["retry-after"] == "3600"
    assert SENT not in r.text
    assert web.store.subscriber(email="p3@example.org") is None
    web.advance(timedelta(hours=1, seconds=1))  # the window has passed
    assert web.subscribe("p3@example.org").status_code == 200
    web.wait_for_email("p3@example.org")


def test_the_site_wide_cap_on_confirmation_emails(make_web: Factory) -> None:
    web = make_web("[web]\nsignups_per_ip = 1000\nconfirmations_per_hour = 2\n")
    answers = [answer(web.subscribe(f"c{n}@example.org")) for n in range(3)]
    assert len(set(answers)) == 1 and answers[0][0] == 200
    web.wait_for_email("c0@example.org")
    web.wait_for_email("c1@example.org")
    third = web.sub("c2@example.org")
    assert third.status is SubscriberStatus.PENDING
    assert web.nonces(third.id) == []  # withdrawn: the address may try again
    web.advance(timedelta(hours=1, seconds=1))
    web.barrier()  # a new hour: the cap allows emails again
    assert sorted(web.recipients()) == ["c0@example.org", "c1@example.org"]
    web.subscribe("c2@example.org")
    web.wait_for_email("c2@example.org")


def test_a_body_over_16_kb_is_refused(web: Web) -> None:
    body = b"email=big%40example.org&website=&padding=" + b"x" * (17 * 1024)
    r = web.post(
        "/subscribe", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 413
    assert web.store.subscribers() == []
    small = body[: 15 * 1024]
    r = web.post(
        "/subscribe", content=small, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 200  # just under the cap: read as usual


# --- confirmation --------------------------------------------------------------------------


def signed_up(web: Web, email: str, **fields: Any) -> tuple[Subscriber, EmailMessage]:
    assert web.subscribe(email, **fields).status_code == 200
    return web.sub(email), web.wait_for_email(email)


def invalid_page(web: Web) -> tuple[int, str]:
    found = answer(web.post("/confirm/not-a-token"))
    assert found[0] == 400 and INVALID in found[1]
    return found


def test_the_confirmation_link_shows_a_button_and_only_post_confirms(web: Web) -> None:
    sub, msg = signed_up(web, "confirm@example.org", topics=["llm"])
    path = confirm_path(msg)
    page = web.get(path)
    assert page.status_code == 200 and "<button" in page.text
    assert f'<form method="post" action="{path}"' in page.text
    assert web.sub("confirm@example.org").status is SubscriberStatus.PENDING

    done = web.post(path)
    assert done.status_code == 200 and "You are subscribed" in done.text
    after = web.sub("confirm@example.org")
    assert after.status is SubscriberStatus.ACTIVE and after.topics == ("llm",)
    link = re.search(r'href="/preferences/([^"]+)"', done.text)
    assert link is not None and web.signer.read("preferences", link.group(1)) == sub.id

    again = web.post(path)
    assert answer(again) == invalid_page(web)
    assert web.sub("confirm@example.org").status is SubscriberStatus.ACTIVE
    # a used link no longer shows a button either: the same page as any invalid token
    assert answer(web.get(path)) == invalid_page(web)


def test_a_confirmation_link_works_for_72_hours(web: Web) -> None:
    _, early = signed_up(web, "early@example.org")
    _, late = signed_up(web, "late@example.org")
    web.advance(timedelta(hours=71))
    assert web.post(confirm_path(early)).status_code == 200
    assert web.sub("early@example.org").status is SubscriberStatus.ACTIVE
    web.advance(timedelta(hours=2))  # 73 hours after the sign-up
    assert answer(web.get(confirm_path(late))) == invalid_page(web)
    assert answer(web.post(confirm_path(late))) == invalid_page(web)
    assert web.sub("late@example.org").status is SubscriberStatus.PENDING


def test_every_bad_confirmation_token_gets_the_same_answer(web: Web) -> None:
    sub, msg = signed_up(web, "target@example.org")
    path = confirm_path(msg)
    token = token_of(path)
    nonce = web.signer.read_text("confirm", token)
    payload, _, signature = token.rpartition(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    bad = [
        f"{payload}.{flipped}",  # tampered signature
        token[:-4],  # cut short
        "x" + token,  # tampered payload
        web.signer.make("unsubscribe", sub.id),  # another purpose
        web.signer.make("confirm", sub.id),  # the right purpose, an id instead of a nonce
        web.signer.make_text("unsubscribe", nonce),  # the nonce under another purpose
        Signer(["another-key-0123456789"]).make_text("confirm", nonce),  # another key
        "not-a-token",
    ]
    expected = invalid_page(web)
    for b in bad:
        assert answer(web.get(f"/confirm/{b}")) == expected, b
        assert answer(web.post(f"/confirm/{b}")) == expected, b
    # signed with our key but for no nonce we issued: only the POST consults the store
    unknown = web.signer.make_text("confirm", "no-such-nonce")
    assert answer(web.post(f"/confirm/{unknown}")) == expected
    assert web.sub("target@example.org").status is SubscriberStatus.PENDING
    assert web.post(path).status_code == 200  # the real link was not used up
    assert web.sub("target@example.org").status is SubscriberStatus.ACTIVE


@pytest.mark.parametrize("how", ["unsubscribed", "bounced"])
def test_confirming_never_revives_a_suppressed_address(web: Web, how: str) -> None:
    sub, msg = signed_up(web, "left@example.org")
    if how == "unsubscribed":
        assert web.store.unsubscribe_id(sub.id, NOW)
    else:
        assert web.store.set_subscriber_status(sub.email, SubscriberStatus.BOUNCED, NOW)
    assert answer(web.post(confirm_path(msg))) == invalid_page(web)
    assert web.sub("left@example.org").status.value == how


def test_confirming_a_forgotten_address_finds_nothing(web: Web) -> None:
    sub, msg = signed_up(web, "erased@example.org")
    assert web.store.forget(sub.email, NOW)
    assert answer(web.post(confirm_path(msg))) == invalid_page(web)
    assert web.store.subscriber(email="erased@example.org") is None
    assert web.store.subscriber(id=sub.id) is None


# --- key rotation --------------------------------------------------------------------------


def test_tokens_signed_with_a_retired_key_still_work(make_web: Factory) -> None:
    web = make_web(keys=[OLD_KEY, SECRET])
    sub = web.active("rotated@example.org", topics=("llm",))
    old = Signer([OLD_KEY])
    page = web.get(f"/preferences/{old.make('preferences', sub.id)}")
    assert page.status_code == 200 and 'name="csrf"' in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    assert Signer([SECRET]).read("csrf", csrf.group(1)) == sub.id  # the newest key signs
    with pytest.raises(TokenError):  # the old key alone cannot read it
        old.read("csrf", csrf.group(1))
    stranger = Signer(["unrelated-key-0123456"]).make("unsubscribe", sub.id)
    gone = web.post(f"/unsubscribe/{stranger}", data={"List-Unsubscribe": "One-Click"})
    assert gone.status_code == 400 and INVALID in gone.text
    assert web.sub("rotated@example.org").status is SubscriberStatus.ACTIVE
    r = web.post(
        f"/unsubscribe/{old.make('unsubscribe', sub.id)}", data={"List-Unsubscribe": "One-Click"}
    )
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert web.sub("rotated@example.org").status is SubscriberStatus.UNSUBSCRIBED


# --- unsubscribe ---------------------------------------------------------------------------


def test_the_unsubscribe_page_shows_a_button_and_changes_nothing(web: Web) -> None:
    sub = web.active("stay@example.org")
    path = f"/unsubscribe/{web.signer.make('unsubscribe', sub.id)}"
    page = web.get(path)
    assert page.status_code == 200 and "<button" in page.text
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page.text
    assert f'<form method="post" action="{path}"' in page.text
    assert web.sub("stay@example.org").status is SubscriberStatus.ACTIVE


@pytest.mark.parametrize("multipart", [False, True])
def test_one_click_unsubscribe(web: Web, multipart: bool) -> None:
    sub = web.active("leave@example.org")
    path = f"/unsubscribe/{web.signer.make('unsubscribe', sub.id)}"
    if multipart:
        r = web.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    else:
        r = web.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert not r.cookies
    assert web.sub("leave@example.org").status is SubscriberStatus.UNSUBSCRIBED
    page = web.get(path)  # afterwards: says so, no button
    assert page.status_code == 200 and "You are unsubscribed" in page.text
    assert "<button" not in page.text


@pytest.mark.parametrize(
    "data", [{}, {"List-Unsubscribe": "Yes"}, {"list-unsubscribe": "One-Click"}, {"x": "1"}]
)
def test_unsubscribe_needs_the_one_click_field(web: Web, data: dict[str, str]) -> None:
    sub = web.active("keep@example.org")
    path = f"/unsubscribe/{web.signer.make('unsubscribe', sub.id)}"
    r = web.post(path, data=data)
    assert r.status_code == 400 and "List-Unsubscribe=One-Click" in r.text
    assert web.sub("keep@example.org").status is SubscriberStatus.ACTIVE


def test_the_unsubscribe_link_of_a_confirmation_email_works(web: Web) -> None:
    """Someone signed up a stranger: the stranger refuses the list in one click, and the
    confirmation link is dead afterwards."""
    _, msg = signed_up(web, "stranger@example.org")
    path = unsubscribe_path(msg)
    page = web.get(path)
    assert page.status_code == 200 and "<button" in page.text
    assert web.sub("stranger@example.org").status is SubscriberStatus.PENDING
    r = web.post(path, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert web.sub("stranger@example.org").status is SubscriberStatus.UNSUBSCRIBED
    assert answer(web.post(confirm_path(msg))) == invalid_page(web)
    assert web.sub("stranger@example.org").status is SubscriberStatus.UNSUBSCRIBED
    web.subscribe("stranger@example.org")  # nor can a new sign-up bring it back
    web.barrier()
    assert web.recipients() == ["stranger@example.org"]
    assert web.sub("stranger@example.org").status is SubscriberStatus.UNSUBSCRIBED


def test_every_bad_unsubscribe_token_gets_the_same_answer(web: Web) -> None:
    sub = web.active("safe@example.org")
    good = web.signer.make("unsubscribe", sub.id)
    bad = [
        good[:-3] + ("xyz" if not good.endswith("xyz") else "abc"),
        web.signer.make("preferences", sub.id),
        web.signer.make("unsubscribe", 99999),
        Signer(["another-key-0123456789"]).make("unsubscribe", sub.id),
    ]
    expected = invalid_page(web)
    for b in bad:
        assert answer(web.get(f"/unsubscribe/{b}")) == expected
        one_click = {"List-Unsubscribe": "One-Click"}
        assert answer(web.post(f"/unsubscribe/{b}", data=one_click)) == expected
    assert web.sub("safe@example.org").status is SubscriberStatus.ACTIVE


# --- preferences ---------------------------------------------------------------------------


def preferences_path(web: Web, sub: Subscriber) -> str:
    return f"/preferences/{web.signer.make('preferences', sub.id)}"


def csrf_of(page: str) -> str:
    found = re.search(r'<input type="hidden" name="csrf" value="([^"]+)">', page)
    assert found is not None
    return found.group(1)


@pytest.fixture
def member(web: Web) -> Subscriber:
    return web.active(
        "member@example.org",
        topics=("llm",),
        keywords=("transformers",),
        frequency="weekly",
        timezone="Asia/Tokyo",
    )


def test_the_preferences_page_shows_the_current_choices(web: Web, member: Subscriber) -> None:
    r = web.get(preferences_path(web, member))
    assert r.status_code == 200
    page = r.text
    assert "member@example.org" in page
    checked_topics = re.findall(r'name="topics" value="([^"]+)" checked', page)
    assert checked_topics == ["llm"]
    assert re.search(r'id="keywords" name="keywords"[^>]*value="transformers"', page)
    assert '<input type="radio" name="frequency" value="weekly" checked>' in page
    assert re.findall(r"<option selected>([^<]+)</option>", page) == ["Asia/Tokyo"]
    assert 'name="paused" value="1">' in page  # not checked
    assert web.signer.read("csrf", csrf_of(page)) == member.id
    unsubscribe = re.search(r'href="/unsubscribe/([^"]+)"', page)
    assert unsubscribe is not None
    assert web.signer.read("unsubscribe", unsubscribe.group(1)) == member.id
    assert "Saved" not in page and not alerts(page)


def test_saving_preferences(web: Web, member: Subscriber) -> None:
    path = preferences_path(web, member)
    form = {
        "csrf": csrf_of(web.get(path).text),
        "topics": ["speech", "vision"],
        "keywords": "diffusion, speech recognition",
        "frequency": "weekly",
        "timezone": "Europe/Berlin",
        "paused": "1",
    }
    r = web.post(path, data=form)
    assert r.status_code == 200 and "Saved" in r.text
    sub = web.sub("member@example.org")
    assert sub.topics == ("speech", "vision")
    assert sub.keywords == ("diffusion", "speech recognition")
    assert sub.frequency == "weekly" and sub.timezone == "Europe/Berlin"
    assert sub.paused is True and sub.status is SubscriberStatus.ACTIVE
    # the page shows what was saved
    assert re.findall(r'name="topics" value="([^"]+)" checked', r.text) == ["speech", "vision"]
    assert re.findall(r"<option selected>([^<]+)</option>", r.text) == ["Europe/Berlin"]
    assert 'name="paused" value="1" checked>' in r.text
    # resuming: the box left unticked; keywords cleaned of duplicates and control characters
    form.pop("paused")
    form["keywords"] = "Diffusion, diffusion,\u202e speech\x00 recognition , ,"
    r = web.post(path, data=form)
    assert r.status_code == 200 and "Saved" in r.text
    sub = web.sub("member@example.org")
    assert sub.paused is False
    assert sub.keywords == ("Diffusion", "speech recognition")


def test_choosing_the_hour_and_weekday_of_the_edition(web: Web, member: Subscriber) -> None:
    path = preferences_path(web, member)
    page = web.get(path).text
    assert '<option value="" selected>The list\'s usual time (07:00)</option>' in page
    form = {
        "csrf": csrf_of(page),
        "frequency": "weekly",
        "timezone": "Europe/Berlin",
        "send_hour": "18",
        "send_weekday": "friday",
    }
    r = web.post(path, data=form)
    assert r.status_code == 200 and "Saved" in r.text
    sub = web.sub("member@example.org")
    assert sub.send_hour == 18 and sub.send_weekday == 4
    assert '<option value="18" selected>18:00</option>' in r.text
    assert '<option value="friday" selected>Friday</option>' in r.text
    for name, bad, label in (
        ("send_hour", "24", "Time of day"),
        ("send_weekday", "someday", "Day of the week"),
    ):
        r = web.post(path, data={**form, name: bad})
        assert r.status_code == 400 and alerts(r.text)[0].startswith(f"{label}: ")
    r = web.post(path, data={**form, "send_hour": "", "send_weekday": ""})  # back to the list's
    assert r.status_code == 200
    sub = web.sub("member@example.org")
    assert sub.send_hour is None and sub.send_weekday is None


def forms_of(web: Web, sub: Subscriber, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf": web.signer.make("csrf", sub.id),
        "topics": ["speech"],
        "keywords": "diffusion",
        "frequency": "daily",
        "timezone": "Europe/Berlin",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "headers"),
    [
        ({"csrf": None}, {}),
        ({"csrf": ""}, {}),
        ({"csrf": "forged"}, {}),
        ({"csrf": "OTHER"}, {}),  # made for another subscriber
        ({"csrf": "PURPOSE"}, {}),  # the preferences token itself, not a csrf token
        ({}, {"origin": "https://evil.example"}),
        ({}, {"origin": "null"}),
    ],
    ids=["missing", "empty", "forged", "other-subscriber", "other-purpose", "evil", "null"],
)
def test_preferences_refuses_forged_posts(
    web: Web, member: Subscriber, changes: dict[str, Any], headers: dict[str, str]
) -> None:
    other = web.active("other@example.org")
    if changes.get("csrf") == "OTHER":
        changes = {"csrf": web.signer.make("csrf", other.id)}
    elif changes.get("csrf") == "PURPOSE":
        changes = {"csrf": web.signer.make("preferences", member.id)}
    r = web.post(
        preferences_path(web, member), data=forms_of(web, member, **changes), headers=headers
    )
    assert r.status_code == 403 and "Not saved" in r.text
    assert web.sub("member@example.org") == member
    assert web.sub("other@example.org") == other


@pytest.mark.parametrize(
    "origin", ["https://digest.test.example", "https://digest.test.example/", "SELF"]
)
def test_preferences_accepts_its_own_origin(web: Web, member: Subscriber, origin: str) -> None:
    origin = web.base if origin == "SELF" else origin
    r = web.post(
        preferences_path(web, member), data=forms_of(web, member), headers={"origin": origin}
    )
    assert r.status_code == 200 and "Saved" in r.text
    assert web.sub("member@example.org").topics == ("speech",)


@pytest.mark.parametrize(
    ("changes", "label", "says"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "Time zone", "choose"),
        ({"timezone": "x" * 65}, "Time zone", "64"),
        ({"keywords": ", ".join(f"word{n}" for n in range(21))}, "Your own keywords", "20"),
        ({"keywords": "fine, " + "k" * 61}, "Your own keywords", "60"),
        ({"topics": ["llm", "cooking"]}, "Topics", "choose"),
        ({"topics": ["llm", "llm"]}, "Topics", "choose"),
        ({"frequency": "hourly"}, "How often", "daily or weekly"),
    ],
    ids=["zone", "long-zone", "21-keywords", "long-keyword", "topic", "dup-topic", "hourly"],
)
def test_bad_preferences_show_the_form_with_one_error(
    web: Web, member: Subscriber, changes: dict[str, Any], label: str, says: str
) -> None:
    r = web.post(preferences_path(web, member), data=forms_of(web, member, **changes))
    assert r.status_code == 400
    errors = alerts(r.text)
    assert len(errors) == 1 and errors[0].startswith(f"{label}: ") and says in errors[0], errors
    assert "Saved" not in r.text
    assert web.signer.read("csrf", csrf_of(r.text)) == member.id  # the form, ready again
    assert web.sub("member@example.org") == member


def test_a_file_upload_to_preferences_saves_nothing(web: Web, member: Subscriber) -> None:
    form = forms_of(web, member, topics=None, paused="1")
    r = web.post(
        preferences_path(web, member),
        data=form,
        files={"topics": ("topics.txt", b"vision", "text/plain")},
    )
    assert r.status_code == 400 and "Saved" not in r.text
    assert web.sub("member@example.org") == member


def test_twenty_keywords_of_sixty_characters_are_fine(web: Web, member: Subscriber) -> None:
    words = [f"{n:02d}" + "k" * 58 for n in range(20)]
    r = web.post(
        preferences_path(web, member), data=forms_of(web, member, keywords=",".join(words))
    )
    assert r.status_code == 200 and "Saved" in r.text
    assert web.sub("member@example.org").keywords == tuple(words)


@pytest.mark.parametrize("status", ["pending", "unsubscribed", "bounced"])
def test_no_preferences_form_unless_active(web: Web, status: str) -> None:
    if status == "pending":
        web.subscribe("quiet@example.org", topics="llm")
        web.wait_for_email("quiet@example.org")
    else:
        web.active("quiet@example.org", topics=("llm",))
        web.store.set_subscriber_status("quiet@example.org", SubscriberStatus(status), NOW)
    sub = web.sub("quiet@example.org")
    path = preferences_path(web, sub)
    page = web.get(path)
    assert page.status_code == 200 and 'name="csrf"' not in page.text
    says = "Not confirmed yet" if status == "pending" else "You are unsubscribed"
    assert says in page.text
    r = web.post(path, data=forms_of(web, sub, topics=["vision"], paused="1"))
    assert 'name="csrf"' not in r.text and "Saved" not in r.text and says in r.text
    assert web.sub("quiet@example.org") == sub


def test_every_bad_preferences_token_gets_the_same_answer(web: Web, member: Subscriber) -> None:
    expected = invalid_page(web)
    bad = [
        web.signer.make("unsubscribe", member.id),
        web.signer.make("csrf", member.id),
        web.signer.make("preferences", 99999),
        Signer(["another-key-0123456789"]).make("preferences", member.id),
        "garbage",
    ]
    for b in bad:
        assert answer(web.get(f"/preferences/{b}")) == expected
        assert answer(web.post(f"/preferences/{b}", data=forms_of(web, member))) == expected
    assert web.sub("member@example.org") == member


# --- the archive ---------------------------------------------------------------------------


def test_the_archive_shows_the_edition_the_subscriber_received(web: Web) -> None:
    reader = web.active("reader@example.org", topics=("llm", "speech"))
    code = run(["--config", str(web.config), "--now", NOW.isoformat(), "send"])
    assert code == 0
    digest = web.wait_for_email("reader@example.org")
    assert not str(digest["Message-ID"]).startswith("<confirm.")
    body = html_of(digest)
    links = re.findall(rf'href="{re.escape(EMAIL_BASE)}(/archive/[^"]+)"', body)
    assert links, "no View in browser link"
    path = links[-1]
    day, token = path.split("/")[2:]
    assert date.fromisoformat(day) == NOW.date()
    assert web.signer.read("archive", token) == reader.id

    r = web.get(path)
    assert r.status_code == 200
    titles = [
        html.unescape(re.sub(r"<[^>]+>", "", m)) for m in re.findall(r"<h2>(.*?)</h2>", r.text)
    ]
    ids = web.store.delivered_paper_ids(reader.id, NOW.date())
    assert ids and titles == [p.title for p in web.store.papers_by_id(ids)]
    email_text = " ".join(html.unescape(html_of(digest)).split())
    for title in titles:
        assert " ".join(title.split()) in email_text, title
    hrefs = re.findall(r'href="([^"]*)"', r.text)
    outside = [h for h in hrefs if not h.startswith("/")]
    assert outside and all(re.match(r"https?://", h) for h in outside), hrefs
    assert all(not h.startswith("//") for h in hrefs), hrefs

    # a paper's links turned hostile in the store: the page shows none of them
    with web.store.engine.begin() as conn:
        conn.execute(
            update(t.papers)
            .where(t.papers.c.id == ids[0])
            .values(url="javascript:alert(1)", pdf_url="data:text/html,hi", code_url="//evil")
        )
    hostile = web.get(path)
    assert hostile.status_code == 200
    hrefs = re.findall(r'href="([^"]*)"', hostile.text)
    assert all(
        (h.startswith("/") and not h.startswith("//")) or re.match(r"https?://", h) for h in hrefs
    )
    assert "javascript:" not in hostile.text and "data:text" not in hostile.text

    expected = invalid_page(web)
    other_day = (NOW.date() - timedelta(days=1)).isoformat()
    wrong = [
        f"/archive/{other_day}/{token}",  # no edition that day
        f"/archive/2026-13-45/{token}",  # not a date
        f"/archive/yesterday/{token}",
        f"/archive/{day}/{web.signer.make('unsubscribe', reader.id)}",  # another purpose
        f"/archive/{day}/{web.signer.make('preferences', reader.id)}",
        f"/archive/{day}/{Signer(['another-key-0123456789']).make('archive', reader.id)}",
        f"/archive/{day}/{web.signer.make('archive', 99999)}",
    ]
    for url in wrong:
        assert answer(web.get(url)) == expected, url
    # another subscriber's token opens their edition, not this one: none that day
    stranger = web.active("latecomer@example.org")
    assert answer(web.get(f"/archive/{day}/{web.signer.make('archive', stranger.id)}")) == expected
