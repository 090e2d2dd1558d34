"""What a web worker carries: the app it serves, not the converters and writers it hands work to.

Rules:
- FOOT-LAZY building the app imports neither pyxform nor openpyxl (about 30 MB a worker): XLSForm
  conversion runs in child processes and openpyxl loads with the first XLSX export.
- FOOT-PRELOAD ``fieldsync serve``'s gunicorn settings load the app in the master (workers share its
  pages) and give each worker fresh database connections.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from server import gunicorn_conf

REPO = Path(__file__).resolve().parents[2]


def test_foot_lazy_app_imports_no_converter(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from server import create_app\n"
        "create_app(json.loads(sys.argv[1]))\n"
        "print(json.dumps(sorted(m for m in ('pyxform', 'openpyxl', 'boto3') if m in sys.modules)))\n"
    )
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    config = {"DATABASE_URL": database, "VAR_DIR": str(tmp_path / "var"), "SECRET_KEY": "x"}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(config)], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_foot_preload_settings() -> None:
    assert gunicorn_conf.preload_app is True
    assert callable(gunicorn_conf.post_fork)
    assert callable(gunicorn_conf.when_ready)
