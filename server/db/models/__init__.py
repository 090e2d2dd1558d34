"""All mapped tables; importing this package registers every model on ``Base.metadata``."""

from server.db.models import exports, forms, indicators, relays, submissions, sync, webhooks  # noqa: F401  (each area registers its tables)
from server.db.models.accounts import AccessToken, AppUserForm, Membership, Project, User
from server.db.models.audit import AuditEvent
from server.db.models.blobs import Blob

__all__ = ["AccessToken", "AppUserForm", "AuditEvent", "Blob", "Membership", "Project", "User"]
