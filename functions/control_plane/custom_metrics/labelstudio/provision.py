"""Set up a Label Studio project for sync: the webhook to this service and a saved view of the score.

Both steps are idempotent: a webhook with the same URL and a view with the same title are updated
in place rather than created again.
"""

from __future__ import annotations

import logging
from typing import Any

from custom_metrics.labelstudio.client import LabelStudioClient

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Custom-Metrics-Secret"  # noqa: S105 (a header name)
DEFAULT_VIEW_TITLE = "Agreement (lowest first)"


def register_webhook(client: LabelStudioClient, ls_project: int, url: str, secret: str) -> int:
    """Create or update the project's webhook to `url`, sending `secret` in SECRET_HEADER; return its id."""
    body = {
        "project": ls_project,
        "url": url,
        "send_payload": True,
        "send_for_all_actions": True,
        "headers": {SECRET_HEADER: secret},
        "is_active": True,
    }
    for webhook in client.list_webhooks(ls_project):
        if webhook.get("url") == url and webhook.get("project") == ls_project:
            client.update_webhook(int(webhook["id"]), body)
            logger.info("webhook updated", extra={"ls_project": ls_project, "webhook": webhook["id"]})
            return int(webhook["id"])
    created = client.create_webhook(body)
    logger.info("webhook created", extra={"ls_project": ls_project, "webhook": created.get("id")})
    return int(created["id"])


def view_data(score_key: str, title: str) -> dict[str, Any]:
    """Build a Data Manager view that shows `data.<score_key>` as a Number column, lowest first."""
    column = f"tasks:data.{score_key}"
    return {
        "title": title,
        "type": "list",
        "target": "tasks",
        # Data Manager orders a column numerically only when its display type is Number.
        "ordering": [column],
        "columnsDisplayType": {column: "Number"},
        "filters": {"conjunction": "and", "items": []},
    }


def ensure_view(client: LabelStudioClient, ls_project: int, score_key: str, title: str = DEFAULT_VIEW_TITLE) -> int:
    """Create or update the saved view titled `title`; return its id."""
    body = {"project": ls_project, "data": view_data(score_key, title)}
    for view in client.list_views(ls_project):
        data = view.get("data") or {}
        if data.get("title") == title:
            client.update_view(int(view["id"]), body)
            return int(view["id"])
    created = client.create_view(body)
    return int(created["id"])
