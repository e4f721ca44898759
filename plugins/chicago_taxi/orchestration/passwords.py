"""The Airflow UI's passwords for the simple auth manager (Airflow 3's default), made before the
API server starts.

Left to the API server, a user without a password gets one generated AND printed into the
server's log. Made here first, each user of `[core] simple_auth_manager_users` gets a random
password in the file the server reads (`simple_auth_manager_passwords.json.generated` in
AIRFLOW_HOME), mode 600, and nothing is printed anywhere. Existing passwords are kept.

    python -m chicago_taxi.orchestration.passwords PATH [USERS]   # USERS: "admin:admin,ops:viewer"
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

DEFAULT_USERS = "admin:admin"  # Airflow's own default for [core] simple_auth_manager_users


def usernames(spec: str) -> list[str]:
    """The user names of a `simple_auth_manager_users` value ("name:role,name:role")."""
    return [entry.split(":")[0].strip() for entry in spec.split(",") if entry.strip()]


def ensure_passwords(path: Path, users: list[str]) -> list[str]:
    """Give every user without one a random password in `path` (created with mode 600); returns
    the users who got one. The file is left readable by its owner only either way."""
    known = json.loads(path.read_text() or "{}") if path.exists() else {}
    missing = [u for u in users if u not in known]
    if missing or not path.exists():
        known.update({u: secrets.token_urlsafe(16) for u in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(json.dumps(known) + "\n")
    path.chmod(0o600)
    return missing


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    spec = argv[1] if len(argv) == 2 else os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", DEFAULT_USERS)
    made = ensure_passwords(Path(argv[0]), usernames(spec))
    print(f"UI passwords in {argv[0]} (mode 600): {'new for ' + ', '.join(made) if made else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
