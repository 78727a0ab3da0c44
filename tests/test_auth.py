"""Users, roles and secrets through the real `fsml users` command on a temporary FSML_HOME."""
import json
import os

import sqlalchemy as sa
from conftest import fsml

from fullstack_ml.auth import User, authenticate
from fullstack_ml.store import connect, mask_url, users


def test_users_add_list_revoke_with_the_real_cli(fsml_home):
    env = dict(os.environ)
    made = json.loads(fsml("users", "add", "ann", "--role", "annotator", "--json", env=env).stdout)
    assert (made["name"], made["role"]) == ("ann", "annotator") and made["token"].startswith("fsml_")
    token = made["token"]
    engine = connect()
    assert authenticate(engine, token) == User("ann", "annotator")
    with engine.connect() as conn:
        stored = [dict(row) for row in conn.execute(sa.select(users)).mappings()]
    assert token not in json.dumps(stored, default=str)  # only its hash is stored

    listed = fsml("users", "list", "--json", env=env).stdout
    assert token not in listed and json.loads(listed.splitlines()[0])["active"] is True
    again = fsml("users", "add", "ann", "--role", "admin", env=env, check=False)
    assert again.returncode != 0 and "revoke the old one first" in again.stderr

    revoked = json.loads(fsml("users", "revoke", "ann", "--json", env=env).stdout)
    assert revoked["active"] is False
    assert authenticate(engine, token) is None  # refused at once
    unknown = fsml("users", "revoke", "nobody", env=env, check=False)
    assert unknown.returncode != 0 and "no user 'nobody'" in unknown.stderr


def test_fsml_token_is_the_owner_and_wrong_tokens_fail(fsml_home, monkeypatch):
    engine = connect()
    monkeypatch.setenv("FSML_TOKEN", "single-user-secret")
    assert authenticate(engine, "single-user-secret") == User("owner", "admin")
    assert authenticate(engine, "single-user-secreT") is None
    assert authenticate(engine, "fsml_0123456789abcdef_" + "x" * 43) is None


def test_mask_url_hides_passwords():
    assert mask_url("postgresql://fsml:pa55@db:5432/fsml") == "postgresql://fsml:***@db:5432/fsml"
    assert "pa55" not in mask_url("redis://:pa55@localhost:6379/0")


def test_users_on_postgresql(postgres_db):
    from fullstack_ml.auth import add_user, list_users, revoke_user, session_id, session_user

    engine = connect(postgres_db)
    token = add_user(engine, "ann", "annotator")
    assert authenticate(engine, token) == User("ann", "annotator")
    assert session_user(engine, session_id(token)) == User("ann", "annotator")
    revoke_user(engine, "ann")
    assert authenticate(engine, token) is None and session_user(engine, session_id(token)) is None
    again = add_user(engine, "ann", "reviewer")  # a revoked name gets a new secret in place
    assert authenticate(engine, again) == User("ann", "reviewer") and len(list_users(engine)) == 1
