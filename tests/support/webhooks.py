"""A webhook receiver on loopback, for the webhook tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai


class Receiver:
    """A webhook receiver on loopback: answers each request with the next of `answers` (then 200), keeps them."""

    def __init__(self, answers: list[int] | None = None, hold_first: bool = False):
        """`hold_first`: the first request gets no answer until `release()` (its sender hangs on it)."""
        self.answers, self.received = list(answers or []), []
        self.held = threading.Event() if hold_first else None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append((body, dict(self.headers)))
                if outer.held is not None and len(outer.received) == 1:
                    outer.held.wait(120)
                self.send_response(outer.answers.pop(0) if outer.answers else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, secret: str, since: int = 0) -> list:
        """The deliveries from the `since`-th on, verified and parsed by the openai SDK (raises on a bad
        signature)."""
        unwrap = openai.OpenAI(api_key="unused").webhooks.unwrap
        return [unwrap(body, headers, secret=secret) for body, headers in self.received[since:]]

    def close(self):
        if self.held is not None:
            self.held.set()
        self.server.shutdown()
