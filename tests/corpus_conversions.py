"""pyxform conversions of corpus files, shared by every test module and every pytest-xdist worker of a run.

The big corpus workbooks take seconds each to convert, and the forms, submissions, exports and server
tests all convert them. Each distinct input (bytes, file name, fallback form id) is converted once per
run: the first process that needs it writes the result to the run's directory, the others read it.
Nothing outlives the run, so a change to the converter is always what the tests see.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

from forms.convert import ConvertedForm, convert_upload
from forms.errors import FormError
from forms.identity import form_id_from_filename

_MEMORY: dict[str, ConvertedForm | FormError] = {}
_DIRECTORY: list[Path] = []  # set once per process by the session fixture in tests/conftest.py


def use_directory(path: Path) -> None:
    """Share conversions through ``path`` (one directory per test run)."""
    path.mkdir(parents=True, exist_ok=True)
    _DIRECTORY[:] = [path]


def _name_id(filename: str) -> str | None:
    try:
        return form_id_from_filename(filename)
    except FormError:
        return None


def convert(data: bytes, filename: str, default_form_id: str | None = None) -> ConvertedForm:
    """``convert_upload(data, filename, default_form_id=...)``, computed once per run; raises its ``FormError``.

    A fallback equal to the id the file name gives is the same input as no fallback (``convert_upload``
    falls back to the file name): both share one conversion.
    """
    if default_form_id is not None and default_form_id == _name_id(filename):
        default_form_id = None
    key = hashlib.sha256(repr((hashlib.sha256(data).hexdigest(), filename, default_form_id)).encode()).hexdigest()
    found = _MEMORY.get(key) or _load(key)
    if found is None:
        try:
            found = convert_upload(data, filename, default_form_id=default_form_id)
        except FormError as exc:
            found = exc
        _store(key, found)
    _MEMORY[key] = found
    if isinstance(found, FormError):
        raise FormError(found.code, found.message, found.context)  # a fresh exception each time
    return found


def _load(key: str) -> ConvertedForm | FormError | None:
    if not _DIRECTORY or not (path := _DIRECTORY[0] / key).is_file():
        return None
    kind, payload = pickle.loads(path.read_bytes())
    return FormError(*payload) if kind == "error" else payload  # type: ignore[no-any-return]


def _store(key: str, found: ConvertedForm | FormError) -> None:
    if not _DIRECTORY:
        return
    entry: tuple[str, Any] = (
        ("error", (found.code, found.message, found.context)) if isinstance(found, FormError) else ("form", found)
    )
    path = _DIRECTORY[0] / key
    partial = path.with_name(f"{key}.{os.getpid()}.partial")
    partial.write_bytes(pickle.dumps(entry))
    os.replace(partial, path)  # atomic: another process reads the whole entry or none
