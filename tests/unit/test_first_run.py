"""First run: the service's address leads to the admin UI, and with no admin account yet a
one-time token lets whoever holds it create the first admin in the browser."""

from __future__ import annotations

import stat
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from vitrine.accounts.setup_token import SetupToken
from vitrine.api.app import create_app
from vitrine.cli import app as cli
from vitrine.config import load_settings

PASSWORD = "a long enough password"


def test_first_admin_is_created_once_with_the_setup_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings(env={}).with_overrides(home=home, admin_recall_check_minutes=0)
    app = create_app(settings, warm=False)
    with TestClient(app) as client:
        first = client.get("/", follow_redirects=False)
        assert first.status_code == 307 and first.headers["location"] == "/admin"
        login = client.get("/admin")  # no session: the sign-in page says how to begin
        assert "No admin account exists yet" in login.text
        token_file = home / "setup-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 40

        assert client.get("/admin/setup?token=wrong").status_code == 403
        assert client.get("/admin/setup").status_code == 403
        form = client.get(f"/admin/setup?token={token}")
        assert form.status_code == 200 and "Create the admin account" in form.text
        data = {"token": token, "username": "owner", "password": PASSWORD}
        differ = client.post("/admin/setup", data=data | {"confirm": PASSWORD + "x"})
        assert differ.status_code == 422 and "The two passwords differ." in differ.text
        short = client.post("/admin/setup", data=data | {"password": "short", "confirm": "short"})
        assert short.status_code == 422 and "at least 10 characters" in short.text
        stolen = client.post("/admin/setup", data=data | {"token": "guess", "confirm": PASSWORD})
        assert stolen.status_code == 403

        done = client.post(
            "/admin/setup", data=data | {"confirm": PASSWORD}, follow_redirects=False
        )
        assert done.status_code == 303 and done.headers["location"] == "/admin"
        assert client.get("/admin").status_code == 200  # signed in as the new admin
        assert app.state.admin.users.get("owner").is_admin
        assert not token_file.exists()
        again = client.get(f"/admin/setup?token={token}", follow_redirects=False)
        assert again.status_code == 303 and again.headers["location"] == "/admin/login"
        replay = client.post(
            "/admin/setup",
            data=data | {"username": "intruder", "confirm": PASSWORD},
            follow_redirects=False,
        )
        assert replay.status_code == 303 and app.state.admin.users.get("intruder") is None


def test_one_token_for_every_process_and_none_once_an_admin_exists(tmp_path: Path) -> None:
    first, second = SetupToken(tmp_path), SetupToken(tmp_path)
    token = first.ensure()
    assert second.ensure() == token and second.matches(token) and not second.matches("")
    first.void()
    assert not second.matches(token) and second.ensure() != token


def test_serve_prints_the_setup_link_only_while_no_admin_exists(
    tmp_path: Path, monkeypatch
) -> None:
    import uvicorn

    monkeypatch.setenv("VITRINE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    runner = CliRunner()
    shown = runner.invoke(cli, ["serve", "--port", "8123"])
    assert shown.exit_code == 0, shown.output
    token = (tmp_path / "home" / "setup-token").read_text().strip()
    assert f"http://127.0.0.1:8123/admin/setup?token={token}" in shown.stderr
    created = runner.invoke(
        cli, ["users", "create", "owner", "--admin", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert created.exit_code == 0, created.output
    quiet = runner.invoke(cli, ["serve", "--port", "8123"])
    assert "setup" not in quiet.stderr
