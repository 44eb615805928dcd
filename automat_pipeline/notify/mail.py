"""E-mail over SMTP, configured by one URL (``AUTOMAT_SMTP_URL``).

``smtp://host:25`` (plain), ``smtp+starttls://user:password@host:587`` (STARTTLS, refused if the
server does not offer it), ``smtps://user:password@host:465`` (TLS from the first byte);
``?cafile=/path/ca.pem`` trusts a private CA, ``?timeout=10`` bounds every network wait. Certificates
are always verified; a password is only ever sent over TLS.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from automat_pipeline.errors import AutomatError

SECURITY = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int
    security: str  # plain | starttls | tls
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_url(cls, url: str) -> Smtp:
        parts = urlsplit(url)
        if parts.scheme not in SECURITY or not parts.hostname:
            raise AutomatError(
                "invalid_smtp_url", f"AUTOMAT_SMTP_URL: use {', '.join(s + '://host' for s in SECURITY)}"
            )
        security, port = SECURITY[parts.scheme]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.username and security == "plain":
            raise AutomatError(
                "invalid_smtp_url", "AUTOMAT_SMTP_URL: a password is sent over TLS only (smtp+starttls, smtps)"
            )
        return cls(
            host=parts.hostname,
            port=parts.port or port,
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            cafile=query.get("cafile"),
            timeout=float(query.get("timeout", 10)),
        )

    def connect(self) -> smtplib.SMTP:
        """A logged-in connection (the caller closes it with ``quit``)."""
        context = ssl.create_default_context(cafile=self.cafile)
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                smtp.starttls(context=context)  # SMTPNotSupportedError if the server offers none
        if self.username:
            smtp.login(self.username, self.password or "")
        return smtp


def message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, to, f"[Automat] {subject}"
    mail.set_content(body + "\n\n-- \nAutomat. Your notification preferences: GET/PUT /notifications/preferences\n")
    return mail
