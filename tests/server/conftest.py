"""Fixtures the server tests share by name (pytest finds them here without an import in each module)."""

from tests.server.s3_fixtures import s3_config, s3_endpoint  # noqa: F401  (fixtures)
