"""Real receivers on 127.0.0.1 for the notification tests: an aiosmtpd SMTP server and
an HTTP webhook receiver (http.server in a thread) that can be told to fail N times."""

from __future__ import annotations

import email
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Inbox:
    """Messages the SMTP server accepted: (recipients, subject, body)."""

    messages: list[tuple[list[str], str, str]] = field(default_factory=list)

    def to(self, address: str) -> list[tuple[str, str]]:
        return [(s, b) for rcpt, s, b in self.messages if address in rcpt]

    def mentioning(self, text: str) -> list[tuple[list[str], str, str]]:
        return [m for m in self.messages if text in m[1] or text in m[2]]


class SmtpServer:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.inbox = Inbox()
        inbox = self.inbox

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
                msg = email.message_from_bytes(envelope.content, policy=policy.default)
                part = msg.get_body(preferencelist=("plain", "html"))
                inbox.messages.append((list(envelope.rcpt_tos), str(msg["subject"]),
                                       part.get_content() if part else ""))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class WebhookServer:
    """Records JSON posts per path; ``fail_next[path] = n`` answers 500 n times first."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.received_at: list[float] = []  # wall clock of each accepted post (latency bench)
        self.attempts: list[str] = []
        self.fail_next: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.attempts.append(self.path)
                if outer.fail_next.get(self.path, 0) > 0:
                    outer.fail_next[self.path] -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.posts.append((self.path, json.loads(body or b"{}")))
                outer.received_at.append(time.time())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[dict]:
        return [p for pth, p in self.posts if pth == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
