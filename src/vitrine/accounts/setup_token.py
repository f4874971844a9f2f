"""The first-run setup token: who may create the first admin account from the browser.

A fresh install has no admin, and asking a newcomer to open a shell for
``vitrine users create`` before the UI can be used is a wall. Instead, like Jupyter, the
server makes a one-time token, keeps it in an owner-only file of the data directory
(``HOME/setup-token``, 0600) and shows it once on its terminal as a URL. Whoever opens
that URL may create the first admin; the file is removed then, and the token is void as
soon as any admin exists (checked on every use, so an account made with
``vitrine users create`` voids it too). The file is created with ``O_EXCL``: when several
processes start together, one makes the token and the others read the same one.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from vitrine.private_fs import PRIVATE_FILE

FILE_NAME = "setup-token"


class SetupToken:
    """The one-time token of the first admin's setup, kept in ``home``."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / FILE_NAME

    def ensure(self) -> str:
        """The current token, made now when there is none."""
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        except FileExistsError:
            current = self.read()
            if current:
                return current
            self.path.unlink(missing_ok=True)  # an empty or broken file: start again
            return self.ensure()
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        return token

    def read(self) -> str | None:
        try:
            return self.path.read_text().strip() or None
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    def matches(self, presented: str | None) -> bool:
        current = self.read()
        return bool(presented and current) and hmac.compare_digest(
            presented.encode(),
            current.encode(),  # type: ignore[union-attr]
        )

    def void(self) -> None:
        self.path.unlink(missing_ok=True)
