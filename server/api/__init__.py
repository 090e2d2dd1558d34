"""The JSON API blueprints: thin handlers that parse, call one service, and serialise."""
