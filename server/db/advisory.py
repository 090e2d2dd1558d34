"""Advisory locks belong to a store, not to the database server.

PostgreSQL's advisory locks are database-wide, and several stores may share one database in separate
schemas (two programmes on one server, a staging copy, parallel test runs). Every lock key is therefore
XORed with a hash of the session's schema: two stores never wait for each other's locks, while within one
store the keys keep the order their callers sort them in (the same salt for every key).
"""

from __future__ import annotations

from sqlalchemy import func

STORE_SALT_SQL = "hashtextextended(current_schema(), 0)"
STORE_SALT = func.hashtextextended(func.current_schema(), 0)
