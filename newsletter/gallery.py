"""Write messages out for people to open: ``.eml``, ``.html``, ``.txt`` each, and an index."""

from __future__ import annotations

import html
from collections.abc import Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from newsletter.deliver import safe_filename

MANIFEST = ".gallery-files"


def parts(data: bytes) -> tuple[str, str, str]:
    """(subject, html, text) of a message."""
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    html_part = msg.get_body(("html",))
    text_part = msg.get_body(("plain",))
    return (
        str(msg.get("Subject", "")),
        html_part.get_content() if html_part is not None else "",
        text_part.get_content() if text_part is not None else "",
    )


def write_gallery(out_dir: Path, messages: Sequence[tuple[str, bytes]], title: str) -> Path:
    """Write each (address, message bytes) and an ``index.html`` linking them; returns the index."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    if manifest.exists():  # remove what the previous gallery wrote, and nothing else
        for name in manifest.read_text(encoding="utf-8").splitlines():
            old = out_dir / name
            if name and "/" not in name and old.is_file():
                old.unlink()
    written: list[str] = []
    rows = []
    for address, data in messages:
        stem = safe_filename(address)
        subject, html_body, text_body = parts(data)
        (out_dir / f"{stem}.eml").write_bytes(data)
        (out_dir / f"{stem}.html").write_text(html_body, encoding="utf-8")
        (out_dir / f"{stem}.txt").write_text(text_body, encoding="utf-8")
        written += [f"{stem}{suffix}" for suffix in (".eml", ".html", ".txt")]
        rows.append(
            f"<tr><td>{html.escape(address)}</td><td>{html.escape(subject)}</td>"
            f'<td><a href="{html.escape(stem)}.html">HTML</a> · '
            f'<a href="{html.escape(stem)}.txt">text</a> · '
            f'<a href="{html.escape(stem)}.eml">.eml</a></td></tr>'
        )
    index = out_dir / "index.html"
    index.write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;"
        "margin:2rem;color:#1f2328}table{border-collapse:collapse}td,th{padding:.4rem .8rem;"
        "border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len(rows)} message(s).</p><table>"
        "<tr><th>Recipient</th><th>Subject</th><th>Open</th></tr>"
        + "".join(rows)
        + "</table></body></html>\n",
        encoding="utf-8",
    )
    manifest.write_text("\n".join([*written, "index.html"]) + "\n", encoding="utf-8")
    return index


def serve_folder(folder: Path, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """An HTTP server for ``folder`` on 127.0.0.1 (not started); returns it and its URL."""
    handler = partial(_LocalHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    return server, f"http://127.0.0.1:{server.server_address[1]}/index.html"


class _LocalHandler(SimpleHTTPRequestHandler):
    """Answers only requests addressed to this loopback server: previews hold live
    unsubscribe links, and a DNS-rebinding page must not read them."""

    def do_GET(self) -> None:
        port = self.server.server_address[1]  # type: ignore[index]
        if self.headers.get("Host") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            self.send_error(403, "wrong Host")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        return None
