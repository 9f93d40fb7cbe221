"""Provider webhooks in: SES (via SNS), SendGrid, Mailgun, Postmark, SparkPost, Brevo and any
Standard Webhooks sender, all turned into the mailbox pipeline's ``Event`` records and run through
the same rules, policy and store.

    service = WebhookService(settings, store, classifier)
    answer = service.handle("sendgrid", raw_body, headers)     # Answer(status, body, headers)

``base`` is the seam (``Receiver``: verify on the raw bytes, then a pure parse); one module per
provider; ``signing`` the Standard Webhooks signature, used both ways.
"""

from __future__ import annotations

from processor.webhooks.base import Parsed, Receiver, WebhookError, WebhookRequest
from processor.webhooks.service import RECEIVERS, Answer, WebhookService, build_receivers, ledger_key

__all__ = [
    "RECEIVERS",
    "Answer",
    "Parsed",
    "Receiver",
    "WebhookError",
    "WebhookRequest",
    "WebhookService",
    "build_receivers",
    "ledger_key",
]
