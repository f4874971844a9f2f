"""Admin UI access: argon2 users, sessions, sign-in, CSRF, lockout and roles (no model needed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from vitrine.accounts.sessions import SessionService
from vitrine.accounts.users import UserError, UserService
from vitrine.api.app import create_app
from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.models import AdminSession, Label, User, utcnow
from vitrine.catalog.store import ProductRecord
from vitrine.cli import app as cli
from vitrine.config import load_settings

PASSWORD = "correct horse battery"


@pytest.fixture()
def users(tmp_path: Path) -> UserService:
    engine = make_engine(f"sqlite:///{tmp_path / 'u.db'}")
    migrate(engine)
    return UserService(engine, lockout_attempts=3, lockout_minutes=15)


def test_passwords_are_argon2_hashed_and_checked(users: UserService) -> None:
    users.create("alice", PASSWORD, "admin")
    with users.engine.connect() as conn:
        stored = conn.execute(select(User.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert users.authenticate("alice", PASSWORD).user is not None
    assert users.authenticate("alice", "wrong password!").reason == "invalid"
    assert users.authenticate("nobody", PASSWORD).reason == "invalid"


def test_bad_users_are_refused_with_a_reason(users: UserService) -> None:
    with pytest.raises(UserError, match="at least 10"):
        users.create("bob", "short", "admin")
    with pytest.raises(UserError, match="role"):
        users.create("bob", PASSWORD, "root")
    users.create("bob", PASSWORD, "analyst")
    with pytest.raises(UserError, match="already exists"):
        users.create("bob", PASSWORD, "admin")


def test_lockout_after_repeated_failures_even_for_the_right_password(users: UserService) -> None:
    users.create("carol", PASSWORD, "analyst")
    assert users.authenticate("carol", "nope nope 1").reason == "invalid"
    assert users.authenticate("carol", "nope nope 2").reason == "invalid"
    third = users.authenticate("carol", "nope nope 3")
    assert third.reason == "locked" and third.locked_until is not None
    assert users.authenticate("carol", PASSWORD).reason == "locked"
    users.unlock("carol")
    assert users.authenticate("carol", PASSWORD).user is not None


def test_a_lock_expires(users: UserService) -> None:
    users.create("dave", PASSWORD, "analyst")
    for _ in range(3):
        users.authenticate("dave", "wrong wrong")
    with users.engine.begin() as conn:
        conn.execute(update(User).values(locked_until=utcnow() - timedelta(seconds=1)))
    assert users.authenticate("dave", PASSWORD).user is not None


def test_sessions_store_only_a_hash_and_expire(users: UserService) -> None:
    user = users.create("erin", PASSWORD, "admin")
    sessions = SessionService(users.engine, lifetime_hours=1)
    token, csrf = sessions.create(user.id)
    info = sessions.get(token)
    assert info is not None and info.user.username == "erin" and info.csrf_token == csrf
    with users.engine.connect() as conn:
        assert token not in conn.execute(select(AdminSession.id)).scalar_one()
    assert sessions.get(token + "x") is None
    with users.engine.begin() as conn:
        conn.execute(update(AdminSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert sessions.get(token) is None


def test_upgrading_drops_the_stored_csrf_tokens(tmp_path: Path) -> None:
    from alembic import command

    from vitrine.catalog.database import alembic_config

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004_events")
        conn.exec_driver_sql(
            "INSERT INTO users (username, password_hash, role, failed_logins, created_at)"
            " VALUES ('old', 'x', 'admin', 0, '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO admin_sessions (id, user_id, csrf_token, created_at, expires_at)"
            " VALUES ('h', 1, 'clear-token', '2026-01-01', '2099-01-01')"
        )
    migrate(engine)
    with engine.connect() as conn:
        columns = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(admin_sessions)")]
        kept = conn.exec_driver_sql("SELECT id, user_id FROM admin_sessions").all()
    assert "csrf_token" not in columns and kept == [("h", 1)]


# -- through HTTP -----------------------------------------------------------------------


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(env={}).with_overrides(
        home=tmp_path / "home", admin_lockout_attempts=3, admin_recall_check_minutes=0
    )
    app = create_app(settings, warm=False)
    admin = app.state.admin
    admin.users.create("alice", PASSWORD, "admin")
    admin.users.create("ana", PASSWORD, "analyst")
    admin.vitrine.store.upsert_products([ProductRecord(id="p1", title="A shirt")])
    with TestClient(app) as c:
        yield c


def login_token(client: TestClient) -> str:
    page = client.get("/admin/login")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def sign_in(client: TestClient, user: str, password: str = PASSWORD) -> str:
    response = client.post(
        "/admin/login",
        data={"username": user, "password": password, "csrf_token": login_token(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    page = client.get("/admin/catalog")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def test_pages_need_a_session(client: TestClient) -> None:
    response = client.get("/admin/catalog", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?next=/admin/catalog"
    htmx = client.get("/admin/catalog", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/admin/login")
    assert client.get("/admin/images/1", follow_redirects=False).status_code == 303


def test_sign_in_sets_a_strict_session_cookie_and_sign_out_ends_it(client: TestClient) -> None:
    response = client.post(
        "/admin/login",
        data={
            "username": "alice",
            "password": PASSWORD,
            "csrf_token": login_token(client),
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/admin"  # never an open redirect
    cookie = response.headers["set-cookie"]
    assert "vitrine_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    page = client.get("/admin/catalog")
    assert page.status_code == 200 and "alice" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert client.post("/admin/logout", data={"csrf_token": csrf}).status_code == 200
    assert client.get("/admin/catalog", follow_redirects=False).status_code == 303


def test_sign_in_form_needs_its_csrf_token(client: TestClient) -> None:
    client.get("/admin/login")
    response = client.post(
        "/admin/login", data={"username": "alice", "password": PASSWORD, "csrf_token": "forged"}
    )
    assert response.status_code == 403 and "expired" in response.text
    assert client.get("/admin/catalog", follow_redirects=False).status_code == 303


def test_wrong_password_then_lockout_over_http(client: TestClient) -> None:
    for _ in range(2):
        response = client.post(
            "/admin/login",
            data={
                "username": "alice",
                "password": "not it at all",
                "csrf_token": login_token(client),
            },
        )
        assert response.status_code == 401 and "Wrong user name or password" in response.text
    response = client.post(
        "/admin/login",
        data={"username": "alice", "password": "not it at all", "csrf_token": login_token(client)},
    )
    assert response.status_code == 429 and "locked" in response.text
    response = client.post(
        "/admin/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": login_token(client)},
    )
    assert response.status_code == 429


def test_every_change_needs_the_session_csrf_token(client: TestClient) -> None:
    csrf = sign_in(client, "alice")
    url = "/admin/catalog/p1/labels"
    fields = {"field": "articleType", "value": "Shirts"}
    assert client.post(url, data=fields).status_code == 403
    assert client.post(url, data=fields, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post(url, data={**fields, "csrf_token": "forged"}).status_code == 403
    ok = client.post(url, data=fields, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and "Saved: articleType = Shirts" in ok.text
    also = client.post(url, data={"field": "articleType", "value": "Tshirts", "csrf_token": csrf})
    assert also.status_code == 200
    with client.app.state.admin.vitrine.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(select(Label.field, Label.value, Label.source)).all()
    assert rows == [("articleType", "Tshirts", "human")]  # one human label per field


def test_the_database_holds_no_csrf_token_in_clear(client: TestClient) -> None:
    csrf = sign_in(client, "alice")
    cookie = client.cookies.get("vitrine_session")
    assert cookie and csrf
    with client.app.state.admin.vitrine.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(select(AdminSession.__table__)).all()
    assert len(rows) == 1
    stored = [str(value) for value in rows[0]]
    assert not any(csrf in value or cookie in value for value in stored), stored
    assert "csrf_token" not in AdminSession.__table__.columns
    # The derived token still works, and only for its own session.
    h = {"X-CSRF-Token": csrf}
    ok = client.post("/admin/catalog/p1/labels", data={"field": "a", "value": "b"}, headers=h)
    assert ok.status_code == 200
    other = sign_in(client, "alice")
    assert other != csrf
    stale = client.post("/admin/catalog/p1/labels", data={"field": "a", "value": "c"}, headers=h)
    assert stale.status_code == 403


def test_label_corrections_name_what_is_wrong(client: TestClient) -> None:
    csrf = sign_in(client, "alice")
    h = {"X-CSRF-Token": csrf}
    missing = client.post(
        "/admin/catalog/nope/labels", data={"field": "a", "value": "b"}, headers=h
    )
    assert missing.status_code == 422 and "does not exist" in missing.text
    blank = client.post("/admin/catalog/p1/labels", data={"field": "a", "value": " "}, headers=h)
    assert blank.status_code == 422 and "label value" in blank.text


def test_analyst_reads_but_cannot_change(client: TestClient) -> None:
    csrf = sign_in(client, "ana")
    for page in ("/admin/catalog", "/admin/catalog/p1", "/admin/upload", "/admin/monitoring"):
        assert client.get(page).status_code == 200, page
    h = {"X-CSRF-Token": csrf}
    denied = client.post("/admin/catalog/p1/labels", data={"field": "a", "value": "b"}, headers=h)
    assert denied.status_code == 403 and "read-only" in denied.text
    assert "Save label" not in client.get("/admin/catalog/p1").text
    upload = client.post(
        "/admin/upload/product",
        data={"product_id": "x"},
        files={"image": ("x.jpg", b"not a photo", "image/jpeg")},
        headers=h,
    )
    assert upload.status_code == 403
    # Reading actions that are POSTs (a recall check) are allowed, with the token.
    assert client.post("/admin/monitoring/recall", headers=h).status_code == 200
    assert client.post("/admin/monitoring/recall").status_code == 403


def test_cli_creates_the_first_admin_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VITRINE_HOME", str(tmp_path / "cli"))
    runner = CliRunner()
    result = runner.invoke(
        cli, ["users", "create", "--admin", "root", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "role admin" in result.output
    short = runner.invoke(cli, ["users", "create", "x", "--password-stdin"], input="short\n")
    assert short.exit_code == 2 and "at least 10" in short.output
    listed = runner.invoke(cli, ["users", "list"])
    assert '"name": "root"' in listed.output and PASSWORD not in listed.output
    engine = make_engine(f"sqlite:///{tmp_path / 'cli' / 'vitrine.db'}")
    assert UserService(engine).authenticate("root", PASSWORD).user is not None
