"""Alert channels: what an alert says (message) and where it goes (channels: webhook, Slack, e-mail).

The incident rules decide when to alert; this package only formats and delivers, with retries and with
every secret kept out of messages and error texts. The names callers use are re-exported here.
"""

from pipeline.alerts.channels import (
    Channel,
    DeliveryOutcome,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
    configured_channels,
    send_with_retries,
)
from pipeline.alerts.message import (
    AlertLevel,
    AlertMessage,
    AlertStatus,
    incident_url,
    make_test_message,
    title,
    webhook_body,
)

__all__ = [
    "AlertLevel",
    "AlertMessage",
    "AlertStatus",
    "Channel",
    "DeliveryOutcome",
    "EmailChannel",
    "SlackChannel",
    "WebhookChannel",
    "configured_channels",
    "incident_url",
    "make_test_message",
    "send_with_retries",
    "title",
    "webhook_body",
]
