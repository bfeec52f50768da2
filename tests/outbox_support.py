"""Real receivers for what leaves Hexie: an SMTP server on loopback (aiosmtpd) and its mailbox."""
from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Mailbox:
    """Every message the test SMTP server accepted, parsed."""

    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self.lock:
            self.messages.append(message)
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        with self.lock:
            return list(self.messages)

    @staticmethod
    def text_of(message: EmailMessage) -> str:
        return message.get_body(("plain",)).get_content()

    @staticmethod
    def html_of(message: EmailMessage) -> str:
        return message.get_body(("html",)).get_content()


class SmtpServer:
    """aiosmtpd on 127.0.0.1 (a free port) collecting into :attr:`mailbox`."""

    def __init__(self, port: int | None = None) -> None:
        self.mailbox = Mailbox()
        self.port = port or free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.running = True
        self.url = f"smtp://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.running:
            self.running = False
            self.controller.stop()
