"""All mapped tables; importing this package registers every model on ``Base.metadata``."""

from server.db.models.accounts import AccessToken, Membership, Project, User
from server.db.models.audit import AuditEvent

__all__ = ["AccessToken", "AuditEvent", "Membership", "Project", "User"]
