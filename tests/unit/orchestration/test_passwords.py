"""The simple auth manager's passwords, made before the API server starts (orchestration.passwords)."""

from __future__ import annotations

import json

from chicago_taxi.orchestration.passwords import ensure_passwords, main, usernames


def test_user_names_come_from_the_airflow_setting():
    assert usernames("admin:admin") == ["admin"]
    assert usernames(" admin:admin , ops:viewer,") == ["admin", "ops"]


def test_each_user_gets_a_random_password_in_a_file_of_the_owners_only(tmp_path):
    path = tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated"
    assert ensure_passwords(path, ["admin", "ops"]) == ["admin", "ops"]
    first = json.loads(path.read_text())
    assert set(first) == {"admin", "ops"} and first["admin"] != first["ops"] and min(len(p) for p in first.values()) >= 20
    assert path.stat().st_mode & 0o777 == 0o600
    other = tmp_path / "other.json"
    ensure_passwords(other, ["admin"])
    assert json.loads(other.read_text())["admin"] != first["admin"], "passwords must be random"


def test_existing_passwords_are_kept_and_a_loose_mode_is_tightened(tmp_path):
    path = tmp_path / "passwords.json"
    path.write_text(json.dumps({"admin": "kept"}))
    path.chmod(0o644)
    assert ensure_passwords(path, ["admin", "ops"]) == ["ops"]
    assert json.loads(path.read_text())["admin"] == "kept"
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_passwords(path, ["admin", "ops"]) == []


def test_the_command_prints_where_the_passwords_are_never_a_password(tmp_path, capsys):
    path = tmp_path / "passwords.json"
    assert main([str(path), "admin:admin"]) == 0
    out = capsys.readouterr().out
    assert str(path) in out and json.loads(path.read_text())["admin"] not in out
