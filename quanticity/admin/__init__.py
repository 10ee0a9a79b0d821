"""Telegram admin control (SPEC §13): an allow-listed, audited command core and its Telegram transport.

Modules: :mod:`.config`, :mod:`.protocols` (SystemControl, RiskControl), :mod:`.commands`
(parsing), :mod:`.replies`, :mod:`.audit` (Redis stream), :mod:`.pending` (approvals and
confirmations), :mod:`.controller` (the core) and :mod:`.telegram` (python-telegram-bot long
polling and the alert push). Never imports Ray.
"""

from quanticity.admin.config import AdminConfig
from quanticity.admin.controller import AdminController
from quanticity.admin.replies import Button, Reply

__all__ = ["AdminConfig", "AdminController", "Button", "Reply"]
