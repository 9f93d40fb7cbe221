"""The console's pages: one handler per page or form, all under /ui/.

Every page needs a session (else: the sign-in page); every form POST passes ``check_origin`` and
carries the session's form token; changes need the ``write`` scope besides ``ui``, and are
recorded with the actor ``ui:<token name>``. Store calls run in the thread pool.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from processor.addresses import AddressError
from processor.api.auth import UI, TokenTable
from processor.api.errors import ApiError
from processor.api.routes.common import blocking
from processor.classify import RulesError, RuleSet, load_classifier
from processor.classify.explain import explain, render
from processor.config import Settings
from processor.console import charts
from processor.console.cache import Refreshing
from processor.console.report import report_parts
from processor.console.session import COOKIE_NAME, CsrfError, Session, SessionCodec, check_form_token, check_origin
from processor.decide import GLOBAL_SCOPE
from processor.store import EntryFilter, QueryError, Store
from processor.store import console as queries
from processor.store._db import utcnow
from processor.store.reprocess import _event_of
from processor.store.types import EventRecord

__all__ = ["Console"]

log = structlog.get_logger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
REPORT_LIMIT = 64 * 1024
"""Longest diagnostic or evidence text shown whole; longer ones are cut with a note."""
CACHE_SECONDS = 60.0
EXPLAINED = 10
"""Report events per page whose evidence is worked out (the newest); older ones link to it."""
MAX_FORM_BYTES = 64 * 1024
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def _static_hashes() -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:10]
            for path in STATIC_DIR.iterdir() if path.is_file()}


class Console:
    """The console's state (templates, session codec, rules for ``explain``), built once."""

    def __init__(self, settings: Settings, store: Store, tokens: TokenTable, secret: bytes) -> None:
        self.settings = settings
        self.store = store
        self.tokens = tokens
        self.sessions = SessionCodec(secret, tokens, settings.api.console_session_hours * 3600)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True,
        )
        hashes = _static_hashes()
        self.env.globals["static"] = lambda name: f"/ui/static/{name}?v={hashes.get(name, '0')}"
        self.env.filters["clip"] = _clip
        self.env.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"
        self.env.filters["pct"] = lambda value: "—" if value is None else f"{value:.3%}"
        self.env.filters["q"] = lambda value: quote(str(value), safe="")
        self._rules: RuleSet | None = None
        self._rules_retry_at = 0.0
        self._cache = Refreshing(CACHE_SECONDS)

    # ------------------------------------------------------------------ plumbing

    def rules(self) -> RuleSet | None:
        """The classification rules, loaded once (None, logged, if they do not load; tried again
        a minute later, not on every page)."""
        if self._rules is None and time.monotonic() >= self._rules_retry_at:
            try:
                self._rules = load_classifier(self.settings.rules)
            except RulesError as exc:
                self._rules_retry_at = time.monotonic() + CACHE_SECONDS
                log.warning("console.rules_unavailable", error=str(exc).splitlines()[0])
        return self._rules

    def page(self, request: Request, template: str, session: Session | None, status: int = 200,
             **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(session=session, path=request.url.path, **context)
        return HTMLResponse(html, status, headers=HEADERS)

    def session_of(self, request: Request) -> Session | None:
        return self.sessions.read(request.cookies.get(COOKIE_NAME))

    def to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/ui/login?" + urlencode({"next": target}), 303, headers=HEADERS)

    async def form(self, request: Request) -> dict[str, str]:
        """The urlencoded form (first value of each field); a body too large is refused."""
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise ApiError(413, "too_large", "the form is too large")
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
        return {name: values[0] for name, values in parsed.items()}

    def refused(self, request: Request, session: Session | None, why: str) -> HTMLResponse:
        log.warning("console.csrf_refused", path=request.url.path, why=why)
        return self.page(request, "csrf_error.html", session, 403, why=why)

    async def changing(self, request: Request) -> tuple[Session, dict[str, str]] | Response:
        """The session and form of a state-changing POST, or the response refusing it."""
        session = self.session_of(request)
        try:
            check_origin(request)
            form = await self.form(request)
            check_form_token(session, form.get("csrf_token"))
        except CsrfError as exc:
            return self.refused(request, session, str(exc))
        assert session is not None
        if not session.can_change:
            return self.page(request, "message.html", session, 403, title="Read-only",
                             message=f"The token {session.name!r} may look but not change (it lacks the write scope).")
        return session, form

    # ------------------------------------------------------------------ sign-in

    async def login_form(self, request: Request) -> Response:
        return self.page(request, "login.html", None, next=_safe_next(request.query_params.get("next")), error="")

    async def login(self, request: Request) -> Response:
        try:
            check_origin(request)
        except CsrfError as exc:
            return self.refused(request, None, str(exc))
        form = await self.form(request)
        target = _safe_next(form.get("next"))
        try:
            principal = self.tokens.authenticate(form.get("token", "").strip() or None)
        except ApiError:
            principal = None
        if principal is None or UI not in principal.scopes:
            why = ("That token is not valid." if principal is None
                   else "That token may not use the console (it lacks the ui scope).")
            log.info("console.login_refused", known=principal is not None)
            return self.page(request, "login.html", None, 401, next=target, error=why)
        value, _ = self.sessions.issue(principal)
        log.info("console.login", actor=principal.name)
        response = RedirectResponse(target, 303, headers=HEADERS)
        response.set_cookie(COOKIE_NAME, value, max_age=int(self.sessions.lifetime), path="/ui",
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        session = self.session_of(request)
        try:
            check_origin(request)
            check_form_token(session, (await self.form(request)).get("csrf_token"))
        except CsrfError as exc:
            return self.refused(request, session, str(exc))
        response = RedirectResponse("/ui/login", 303, headers=HEADERS)
        response.delete_cookie(COOKIE_NAME, path="/ui", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    # ------------------------------------------------------------------ pages

    async def overview(self, request: Request) -> Response:
        session = self.session_of(request)
        if session is None:
            return self.to_login(request)
        days = 90 if request.query_params.get("days") == "90" else 30
        data = await blocking(queries.overview, self.store, days, lambda category: self.top_domains(category, days))
        reasons = await blocking(self.active_reasons)
        return self.page(
            request, "overview.html", session, days=days, data=data, chart=charts.bar_chart(data.per_day),
            rate_charts=[charts.rate_chart(series) for series in data.rates], reasons=reasons,
            active_total=sum(reasons.values()), thresholds=charts.THRESHOLDS,
        )

    def active_reasons(self) -> dict[str, int]:
        """Entries in force by reason (a pass over the list: refreshed in the background each minute)."""
        return self._cache.get("active_by_reason", lambda: queries.active_by_reason(self.store))

    def top_domains(self, category: str, days: int) -> list[tuple[str, int]]:
        """The top recipient domains (a sum over a row per domain and day: refreshed in the
        background each minute, and across midnight, so no page waits for it but the first)."""
        return self._cache.get(("top", category, days), lambda: queries.top_domains(self.store, category, days))

    async def search(self, request: Request) -> Response:
        session = self.session_of(request)
        if session is None:
            return self.to_login(request)
        text = request.query_params.get("q", "").strip()
        if "@" in text:
            return RedirectResponse("/ui/address?" + urlencode({"a": text}), 303, headers=HEADERS)
        page = None
        error = ""
        if text:
            try:
                page = await blocking(self.store.list_entries, EntryFilter(domain=text, include_expired=True),
                                      cursor=request.query_params.get("cursor") or None, limit=50)
            except QueryError as exc:
                error = str(exc)
        return self.page(request, "search.html", session, q=text, page=page, error=error)

    async def address(self, request: Request) -> Response:
        session = self.session_of(request)
        if session is None:
            return self.to_login(request)
        given = request.query_params.get("a", "").strip()
        try:
            normal = self.store.normalise(given)
        except AddressError as exc:
            return self.page(request, "search.html", session, 422, q=given, page=None, error=str(exc))
        entries = await blocking(queries.entries_of, self.store, normal)
        before = request.query_params.get("before")
        history = await blocking(self.store.history, normal, limit=50,
                                 before_id=int(before) if before and before.isdigit() else None)
        evidence = await blocking(self.evidence_of, history)
        now = utcnow()
        return self.page(
            request, "address.html", session, address=normal, entries=entries, history=history,
            evidence=evidence, now=now, done=request.query_params.get("done", ""),
            older=history[-1].id if len(history) == 50 else None, global_scope=GLOBAL_SCOPE,
        )

    def evidence_of(self, events: list[EventRecord]) -> dict[int, str]:
        """The evidence of each event, ``explain`` for the newest EXPLAINED report events only (it
        matches every rule: a few ms each); in the thread pool, off the event loop."""
        found: dict[int, str] = {}
        explained = 0
        for event in events:
            if event.message_ref is None and event.mailbox == "":
                found[event.id] = event.explanation
            elif explained < EXPLAINED:
                found[event.id] = self.evidence(event)
                explained += 1
        return found

    def evidence(self, event: EventRecord) -> str:
        """``explain`` for a report event with today's rules; the change's note for a manual one."""
        if event.message_ref is None and event.mailbox == "":
            return event.explanation
        rules = self.rules()
        if rules is None:
            return event.explanation
        try:
            text = render(explain(rules.compiled, _event_of(event)))
        except ValueError:
            return event.explanation
        if event.explanation:
            text += f"\n  policy: {event.explanation}"
        return text

    async def remove(self, request: Request) -> Response:
        checked = await self.changing(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        address, note = form.get("address", ""), form.get("note", "").strip()
        scope = form.get("scope", GLOBAL_SCOPE) or GLOBAL_SCOPE
        if not note:
            return self.page(request, "message.html", session, 422, title="A note is required",
                             message="Say why the address may be mailed again; the note is kept in its history.")
        try:
            await blocking(self.store.remove, address, scope=scope, note=note, actor=f"ui:{session.name}")
        except (AddressError, QueryError) as exc:
            return self.page(request, "message.html", session, 422, title="Not removed", message=str(exc))
        log.info("console.remove", actor=session.name, scope=scope)
        return RedirectResponse("/ui/address?" + urlencode({"a": address, "done": "removed"}), 303, headers=HEADERS)

    async def add(self, request: Request) -> Response:
        checked = await self.changing(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        address, note = form.get("address", ""), form.get("note", "").strip()
        scope = form.get("scope", "").strip() or GLOBAL_SCOPE
        reason = form.get("reason", "").strip() or "manual"
        days = form.get("ttl_days", "").strip()
        try:
            expires = utcnow() + timedelta(days=int(days)) if days else None
            await blocking(self.store.add, address, reason=reason, scope=scope, note=note, expires_at=expires,
                           actor=f"ui:{session.name}")
        except (AddressError, QueryError, ValueError, OverflowError) as exc:
            return self.page(request, "message.html", session, 422, title="Not added", message=str(exc))
        log.info("console.add", actor=session.name, scope=scope)
        return RedirectResponse("/ui/address?" + urlencode({"a": address, "done": "added"}), 303, headers=HEADERS)

    async def review(self, request: Request) -> Response:
        session = self.session_of(request)
        if session is None:
            return self.to_login(request)
        events = await blocking(queries.undetermined_events, self.store)
        top = await blocking(queries.top_rules, self.store, 30)
        rules = self.rules()
        by_id = {rule.id: rule for rule in rules.rules} if rules is not None else {}
        evidence = await blocking(self.evidence_of, events)
        return self.page(request, "review.html", session, events=events, top=top, rules=by_id, evidence=evidence,
                         plan=None, since_days=7)

    async def reprocess(self, request: Request) -> Response:
        """Preview (always) or apply (with a note) what today's rules change for recent reports."""
        checked = await self.changing(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        from processor.store.reprocess import reprocess

        rules = self.rules()
        if rules is None:
            return self.page(request, "message.html", session, 503, title="Rules unavailable",
                             message="The rules do not load; see the log.")
        days_text = form.get("since_days", "7")
        since_days = int(days_text) if days_text.isdigit() and 0 < int(days_text) <= 365 else 7
        apply = form.get("apply") == "1"
        note = form.get("note", "").strip()
        if apply and not note:
            return self.page(request, "message.html", session, 422, title="A note is required",
                             message="Say why the rule change is applied; the note is kept with each change.")
        rules.reload()
        plan = await blocking(reprocess, self.store, rules, apply=apply, since=utcnow() - timedelta(days=since_days),
                              actor=f"ui:{session.name}", note=note)
        if apply:
            log.info("console.reprocess", actor=session.name, note=note, changes=len(plan.changes))
        events = await blocking(queries.undetermined_events, self.store)
        top = await blocking(queries.top_rules, self.store, 30)
        evidence = await blocking(self.evidence_of, events)
        return self.page(request, "review.html", session, events=events, top=top,
                         rules={rule.id: rule for rule in rules.rules}, evidence=evidence, plan=plan,
                         since_days=since_days)

    async def report(self, request: Request) -> Response:
        """The report an event's verdict came from: its readable parts, the recipient's first."""
        session = self.session_of(request)
        if session is None:
            return self.to_login(request)
        given = request.query_params.get("event", "")
        found = await blocking(queries.report_of_event, self.store, int(given)) if given.isdigit() else None
        if found is None:
            return self.page(request, "message.html", session, 404, title="No such event",
                             message="There is no event with that number.")
        event, message = found
        parts = report_parts(message.data, event.recipient or event.address) if message is not None else []
        return self.page(request, "report.html", session, event=event, message=message, parts=parts,
                         keep_kib=self.settings.database.keep_report_kib)

    async def quarantined_raw(self, request: Request) -> Response:
        """A quarantined message as kept, for download (never shown inline)."""
        session = self.session_of(request)
        if session is None:
            return self.to_login(request)
        given = request.query_params.get("id", "")
        found = await blocking(queries.quarantined_message, self.store, int(given)) if given.isdigit() else None
        if found is None or found[1] is None:
            return self.page(request, "message.html", session, 404, title="Not kept",
                             message="That message was not kept (keep_report_kib is 0, or it predates the console).")
        failed, message = found
        assert message is not None
        log.info("console.download", actor=session.name, failed_id=failed.id)
        return Response(message.data, 200, media_type="application/octet-stream", headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="quarantined-{failed.id}.eml"'})

    async def quarantine_reprocess(self, request: Request) -> Response:
        """"Process again": mark a quarantined message for the daemon (the console parses nothing);
        the request, with the actor and the note, is an audit row."""
        checked = await self.changing(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        given = form.get("id", "")
        note = form.get("note", "").strip()
        if not given.isdigit():
            return self.page(request, "message.html", session, 422, title="Not requested",
                             message="Which quarantined message? (the form named none)")
        try:
            await blocking(self.store.request_reprocess, int(given), actor=f"ui:{session.name}", note=note)
        except QueryError as exc:
            return self.page(request, "message.html", session, 422, title="Not requested", message=str(exc))
        log.info("console.quarantine_reprocess", actor=session.name, failed_id=int(given))
        return RedirectResponse("/ui/mailboxes?" + urlencode({"done": given}), 303, headers=HEADERS)

    async def mailboxes(self, request: Request) -> Response:
        session = self.session_of(request)
        if session is None:
            return self.to_login(request)
        boxes = await blocking(queries.mailboxes, self.store)
        failed = await blocking(queries.quarantined, self.store)
        configured = sorted(self.settings.mailboxes)
        done = request.query_params.get("done", "")
        return self.page(request, "mailboxes.html", session, boxes=boxes, failed=failed, configured=configured,
                         done=done if done.isdigit() else "")


def _clip(text: str, limit: int = REPORT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit:,} more characters not shown]"


def _safe_next(target: str | None) -> str:
    """Only a path inside the console (never another site) may follow sign-in."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


Handler = Callable[[Request], Awaitable[Response]]
