"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.store import StoreError
from kits import __version__
from server.agent_releases import MAX_WHEEL_BYTES
from server.api import API_PREFIX, build_api_router
from server.body_limit import BodyLimit
from server.broker_admin import BrokerAdmin
from server.headers import SecurityHeaders, security_headers
from server.resources import Clock, Resources, open_resources
from server.security import redact_url
from server.settings import ServerSettings
from server.untrusted import safe_json, safe_text
from server.web import mount_web
from server.web.errors import error_page, wants_html

__all__ = ["YOUNG_COLLECTION_EVERY", "create_app", "freeze_startup_heap"]

log = logging.getLogger(__name__)


YOUNG_COLLECTION_EVERY = 20_000
"""New container objects between two collections of the youngest generation in a serving process
(Python's default: 700). A chart parses ~7,000 rows (lists) from InfluxDB and builds its columns:
at 700 that was ~10 young and one middle collection per chart, each walking what the chart still
holds; at 20,000 about one every three charts (server CPU per chart 0.76-0.90x, same run,
``benchmarks/ab_influx_tiers.py --server``). Its garbage is freed by reference counting as
before; only cycles wait longer (a few MB at most)."""


def freeze_startup_heap() -> tuple[int, int, int]:
    """Keep what the process holds once the app has started out of the garbage collector's passes,
    and collect its youngest generation every :data:`YOUNG_COLLECTION_EVERY` new objects.

    For a process that serves one app until it exits (``suitcase server run``, which calls this
    once the app's startup has run: ``create_app(freeze_heap=True)``): every module, the app, its
    routes and what its startup loaded (the registry's migrations, the catalogue) live as long as
    the process (~200,000 objects), and a full collection walked them all, ~100 ms of CPU, about
    once every ten charts (a chart makes thousands of short-lived objects). Collected first, so no
    garbage is frozen. Not for a process that builds many apps (tests): what an app frozen here
    leaves behind later is never collected.

    Returns:
        The collector's thresholds before, for a process that goes on to build other apps (a
        benchmark) to restore with ``gc.unfreeze(); gc.set_threshold(*before)``.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, before[1], before[2])
    return before


def create_app(
    settings: ServerSettings | None = None,
    *,
    clock: Clock = time.time,
    monotonic: Clock = time.monotonic,
    freeze_heap: bool = False,
) -> FastAPI:
    """Build the server app.

    Nothing is opened until the app starts: its lifespan loads the catalogue into the registry
    (creating the tables), opens the store, and closes both on shutdown.

    Args:
        settings: where the registry and the store are; by default from ``SUITCASE_SERVER_*``.
        clock: UTC epoch seconds now; injected so tests control "now".
        monotonic: how old cached values are (the fleet page's index); injected apart from
            ``clock``, which tests hold still.
        freeze_heap: once started, :func:`freeze_startup_heap` (for a process that serves this
            one app until it exits: ``suitcase server run``).
    """
    settings = settings if settings is not None else ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = open_resources(settings, clock, monotonic)
        listener = None
        alerts_task = None
        try:
            if settings.mqtt_host and settings.mqtt_dynsec:
                resources = dataclasses.replace(resources, broker=_broker_admin(settings))
            if settings.mqtt_host:
                from server.listener import StatusListener

                listener = StatusListener(settings, resources.engine, clock)
                listener.start()
            if settings.alert_interval_s > 0:
                alerts_task = asyncio.create_task(_alert_loop(resources))
            app.state.resources = resources
            app.state.listener = listener
            if settings.fleet_cache_warm_at_start:
                from server.web.views.fleet import warm_index

                warm_index(resources)
            if freeze_heap:
                freeze_startup_heap()
            log.info(
                "server started",
                extra={
                    "store": settings.store,
                    "registry": redact_url(settings.registry_url, keep_path=True),
                },
            )
            yield
        finally:
            if alerts_task is not None:
                alerts_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await alerts_task
            if listener is not None:
                listener.stop()
            resources.close()

    app = FastAPI(
        title="IoT Suitcase",
        summary="Registry of kits and devices, catalogue of use-cases, readings and dead letters.",
        version=__version__,
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        # The reference pages are ours (server.web.views.api_docs): FastAPI's load scripts from a
        # CDN that the pages' Content-Security-Policy blocks (they showed a blank page).
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(build_api_router(), prefix=API_PREFIX)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(DataError, _out_of_range)
    app.add_exception_handler(IntegrityError, _conflict)
    app.add_exception_handler(StoreError, _store_unavailable)
    app.add_exception_handler(OperationalError, _registry_unavailable)
    app.add_exception_handler(InterfaceError, _registry_unavailable)
    app.add_exception_handler(Exception, _server_error(security_headers(settings.map_tiles_url)))
    mount_web(app)
    # An agent release (a wheel) is larger than any other request: it has its own bound.
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        larger={("POST", f"{API_PREFIX}/agent-releases"): MAX_WHEEL_BYTES},
    )
    app.add_middleware(
        SecurityHeaders,
        headers=security_headers(settings.map_tiles_url, https=settings.environment == "production"),
    )
    return app


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _error(
    status: int, detail: Any, slug: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Every error body: ``{"detail": ..., "error": slug, "status": code}``."""
    return JSONResponse(
        {"detail": detail, "error": slug or _slug(status), "status": status},
        status_code=status,
        headers=headers,
    )


def _broker_admin(settings: ServerSettings) -> BrokerAdmin:
    """The device accounts' admin the settings choose (README, "Device accounts": dynsec, files-remote
    or files)."""
    assert settings.mqtt_host is not None
    if settings.device_accounts == "files":
        from server.broker_files import PID_FILE, MosquittoFilesAdmin, login_probe, signal_reload

        assert settings.device_accounts_dir is not None
        return MosquittoFilesAdmin(
            settings.device_accounts_dir,
            reload=signal_reload(settings.device_accounts_dir / PID_FILE),
            probe=login_probe(settings.mqtt_host, settings.mqtt_port, tls=settings.mqtt_tls_context()),
        )
    username = settings.mqtt_username or ""
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else ""
    if settings.device_accounts == "files-remote":
        from server.broker_remote import RemoteFilesAdmin

        return RemoteFilesAdmin(
            settings.mqtt_host, settings.mqtt_port, username, password, tls=settings.mqtt_tls_context()
        )
    from server.broker_admin import DynSecAdmin

    return DynSecAdmin(
        settings.mqtt_host, settings.mqtt_port, username, password, tls=settings.mqtt_tls_context()
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """A JSON body for the API and its clients; a page in the site's layout for a browser."""
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    if wants_html(request):
        return error_page(request, exc.status_code, exc.detail, headers)
    return _error(exc.status_code, exc.detail, headers=headers)


def _server_error(headers: list[tuple[bytes, bytes]]) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A bug's 500: the traceback goes to the log (Starlette re-raises it to the server), the
    visitor gets a page or a JSON body that gives nothing of it away. This answer is sent from
    outside the other middleware, so it carries the security headers itself."""

    async def handler(request: Request, exc: Exception) -> Response:
        if wants_html(request):
            response: Response = error_page(request, 500)
        else:
            response = _error(500, "the server failed to answer: the error is logged; try again later")
        for name, value in headers:
            response.headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        return response

    return handler


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A body, path or query that fails validation: 422 naming each field and what is wrong.

    The errors echo the input, which is untrusted: NaN, lone surrogates, bytes that are not UTF-8
    or a 100 kB string would make the answer itself fail (a 500); they are made safe first.
    """
    assert isinstance(exc, RequestValidationError)
    return _error(422, [_safe_error(e) for e in list(exc.errors())[:50]], "validation_error")


def _safe_ctx(value: object) -> Any:
    return safe_json(value) if isinstance(value, int | float | str) else safe_text(str(value), 500)


def _safe_error(error: Any) -> dict[str, Any]:
    if not isinstance(error, dict):
        return {"msg": safe_text(str(error), 500)}
    safe: dict[str, Any] = {}
    for key, value in error.items():
        if key == "ctx" and isinstance(value, dict):
            safe[key] = {str(k): _safe_ctx(v) for k, v in value.items()}
        elif key == "input" and isinstance(value, bytes):
            safe[key] = safe_text(value[:500].decode("utf-8", "replace"), 500)
        else:
            safe[str(key)] = safe_json(value)
    return safe


async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
    """An id or number beyond what the registry database stores (e.g. 2**63) is bad input."""
    return _error(422, "a number in the request is out of range: ids and numbers must fit 32/64-bit integers")


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    """Two requests raced for the same unique value: the loser is told to retry."""
    return _error(409, "the change conflicts with another made at the same time: reload and try again")


PUBLIC_STORE_REASON = "the data store did not answer; the server's log has the reason for its operators"


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """The store failed a read: a 503 with the reason (a page saying so), never an empty answer."""
    log.warning("store unavailable: %s", exc, extra={"path": request.url.path})
    caller = getattr(request.state, "principal", None)
    staff = caller is not None and caller.kind != "anonymous" and caller.token_kind != "kiosk"
    # The store's reason names its address: for the staff who can fix it, not for the public.
    reason = str(exc) if staff else PUBLIC_STORE_REASON
    if request.url.path.startswith(API_PREFIX):
        return _error(503, reason, "store_unavailable", headers={"Retry-After": "10"})
    from server.web.render import render

    page_reason = str(exc) if staff else None  # the page explains it in the visitor's language
    return render(request, "store_unavailable.html", {"message": page_reason}, status_code=503)


async def _registry_unavailable(request: Request, exc: Exception) -> Response:
    """The registry database did not answer (stopped, restarting, unreachable, locked): a 503 with
    Retry-After, never a 500; the request's transaction did not commit, so nothing changed."""
    log.warning(
        "registry database unavailable: %s", str(exc).splitlines()[0][:300], extra={"path": request.url.path}
    )
    detail = (
        "the registry database does not answer: nothing was changed; try again in a few seconds "
        "(operators: check the database server and the server's log)"
    )
    headers = {"Retry-After": "10"}
    if wants_html(request):
        return error_page(request, 503, detail, headers)
    return _error(503, detail, "registry_unavailable", headers=headers)


async def _alert_loop(resources: Resources) -> None:
    from server.alerts import evaluate, notify_due

    while True:
        await asyncio.sleep(resources.settings.alert_interval_s)
        try:
            await asyncio.to_thread(evaluate, resources)
        except Exception:  # one failed round must not stop alerting
            log.exception("alert evaluation failed")
        try:  # after evaluate's commit: retries of earlier rounds go out too
            await asyncio.to_thread(notify_due, resources)
        except Exception:
            log.exception("sending notifications failed")
        try:
            await asyncio.to_thread(_expire_pending, resources)
        except Exception:
            log.exception("dropping expired enrollment configs failed")


def _expire_pending(resources: Resources) -> None:
    from sqlmodel import Session

    from server.fleet import expire_pending

    with Session(resources.engine) as session:
        if expire_pending(session, resources.clock()):
            session.commit()
