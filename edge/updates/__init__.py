"""Staged agent updates on the device (docs/architecture.md, "Agent updates").

The server offers a version with the ``update`` command: a wheel's URL, its SHA-256 and a health
deadline. The agent downloads and checks the wheel, installs it beside the running version
(:mod:`edge.updates.installer`), and, once its outbox is closed, switches the agent home's
``current`` link to it and exits. The launcher (:mod:`edge.updates.launcher`, started by systemd
from the base install and never updated itself) starts the new version and rolls back by itself
when it does not report healthy within the deadline. The outcome is the command's reply, sent by
whichever version runs afterwards (:mod:`edge.updates.updater`).

:mod:`edge.updates.home` and :mod:`edge.updates.launcher` use the standard library only.
"""

__all__: list[str] = []
