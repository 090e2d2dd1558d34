"""The store: typed SQLAlchemy 2 models, engine/session set-up, and query functions."""
