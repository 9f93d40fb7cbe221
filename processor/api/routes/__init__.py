"""One router per resource; ``processor.api.app.create_app`` includes them in ROUTERS order
(fixed paths such as /v1/suppressions/export before /v1/suppressions/{address})."""

from __future__ import annotations

from fastapi import APIRouter

from processor.api.routes import health, stats, suppressions, transfer, webhooks

ROUTERS: list[APIRouter] = [health.router, transfer.router, suppressions.router, stats.router, webhooks.router]
