"""The repository speaks to any contributor: no tracked file names a path of one machine.

Rule: tracked text files contain no absolute home or workspace paths (``/root/…``, ``/home/<name>/…``,
``/Users/<name>/…``, ``/work/…``), which would only be true on the machine that wrote them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# An absolute path at the start of a token: not an XPath such as instance('x')/root/item.
MACHINE_PATH = re.compile(r"""(?:^|[\s"'`=(\[,])(/(?:root|work|home/\w+|Users/\w+)/[\w.-])""")


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(reason="not a git checkout (the check reads git's list of tracked files)")
    return [REPO / name for name in out.decode().split("\0") if name]


def test_no_tracked_file_names_a_path_of_one_machine() -> None:
    found = []
    for path in _tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            match = MACHINE_PATH.search(line)
            if match:
                found.append(f"{path.relative_to(REPO)}:{number}: {match.group(1)}")
    assert found == []


def test_the_pattern_catches_machine_paths_and_spares_xpath() -> None:
    slash = "/"  # the examples are built, so that this file does not name them itself
    assert MACHINE_PATH.search(f"see {slash}work{slash}main/server for details")
    assert MACHINE_PATH.search(f'path = "{slash}home{slash}amina/fieldsync"')
    assert not MACHINE_PATH.search("instance('entrepreneurs')/root/item[name=1]")
