"""Query functions, one module per aggregate; the session comes first and nothing here commits."""
