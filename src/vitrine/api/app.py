"""The FastAPI application: routers, errors, authentication, limits, metrics, logs, traces."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from threadpoolctl import threadpool_limits

from vitrine import __version__, tracing
from vitrine.admin import install_admin
from vitrine.api.auth import RateLimiter
from vitrine.api.cors import BrowserCors, origins_of
from vitrine.api.logs import configure_logging
from vitrine.api.metrics import Metrics, ObservedRequests
from vitrine.api.openapi import install_openapi
from vitrine.api.problems import install_problem_handlers
from vitrine.api.routes import (
    ads,
    cnn,
    imports,
    models,
    ops,
    products,
    scenes,
    search,
    tryon,
    webhooks,
)
from vitrine.api.routes import jobs as job_routes
from vitrine.api.routes import recommend as recommend_routes
from vitrine.api.routes import storefront as storefront_routes
from vitrine.cluster.change_feed import ChangeFollower
from vitrine.cluster.job_queue import JobRunner
from vitrine.cluster.leader import Duty, Leadership, lock_for
from vitrine.config import Settings, load_settings
from vitrine.jobs.backfill import backfill_layouts
from vitrine.jobs.background import job_handlers
from vitrine.jobs.import_jobs import ImportJobs
from vitrine.jobs.localizer_jobs import queue_localizer_if_due
from vitrine.runtime import Runtime
from vitrine.storefront.demo import DemoShop
from vitrine.worker import BackgroundWorker


def create_app(settings: Settings | None = None, *, warm: bool = True) -> FastAPI:
    """The service; ``warm`` loads the model and index before the first request."""
    vitrine = Runtime(settings or load_settings())
    traces = tracing.configure(vitrine.settings, "api")
    metrics = Metrics()
    vitrine.on_batch = metrics.batch_size.observe
    vitrine.on_inference = metrics.inference.observe
    jobs = ImportJobs(vitrine)
    # Created before the index loads, so that no change made meanwhile is missed.
    follower = ChangeFollower(
        vitrine.engine,
        vitrine.settings,
        vitrine.catalog_changed,
        follow_settings=vitrine.follow_service_settings,
    )
    runner = JobRunner(vitrine.jobs.store, job_handlers(vitrine))
    vitrine.jobs.on_submit = runner.wake  # a job queued here starts at once when we lead
    duties = [
        Duty("import jobs", jobs.start, jobs.stop),
        Duty("background jobs", runner.start, runner.stop),
    ]
    if warm:  # the colour layouts of photos imported before layouts existed, once
        backfill = BackgroundWorker(
            "backfill", lambda: backfill_layouts(vitrine), once=True, join_timeout=0
        )
        duties.append(Duty("layout backfill", backfill.start, backfill.stop))
    duties.append(
        Duty(  # background retraining, when configured
            "classifier retraining",
            lambda: vitrine.classification.start(),
            lambda: vitrine.classification.stop(),
        )
    )
    # Webhooks: the leader sends what is due; a publish here wakes it at once.
    deliveries = BackgroundWorker(
        "webhook-deliveries", vitrine.webhooks.step, interval=vitrine.settings.webhook_poll_s
    )
    vitrine.webhooks.on_queued = deliveries.wake
    duties.append(Duty("webhook deliveries", deliveries.start, deliveries.stop))
    if vitrine.settings.localizer_retrain_minutes > 0:
        grown = BackgroundWorker(
            "localizer-retraining",
            lambda: queue_localizer_if_due(vitrine),
            interval=vitrine.settings.localizer_retrain_minutes * 60.0,
            wait_first=True,
        )
        duties.append(Duty("localizer retraining", grown.start, grown.stop))
    leadership = Leadership(lock_for(vitrine.engine, vitrine.settings.home), duties)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Concurrency comes from requests: a BLAS thread pool per request would thrash.
        threadpool_limits(1, user_api="blas")
        if vitrine.settings.serve_gil_switch_ms > 0:  # the event loop waits less for the GIL
            sys.setswitchinterval(vitrine.settings.serve_gil_switch_ms / 1000)
        if warm:
            vitrine.search  # noqa: B018 - load or rebuild the index now, not on a request
            vitrine.batcher  # noqa: B018
        follower.start()
        leadership.start()  # import jobs, backfill, retraining: in one process only
        admin.start()
        vitrine.recommendations.start()  # loads or trains the models in the background
        # What start-up loaded lives as long as the process: keep it out of the cyclic
        # garbage collector's full passes, which otherwise stall requests now and then
        # (garbage is collected first: frozen objects are never collected).
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        yield
        admin.stop()
        leadership.stop()
        follower.stop()
        vitrine.close()
        tracing.flush()

    app = FastAPI(
        title="Vitrine",
        version=__version__,
        description="Visual intelligence for e-commerce catalogs.",
        lifespan=lifespan,
        # Request spans (METHOD route, semantic-convention attributes, the caller's
        # traceparent followed) from FastAPI's native telemetry, on our provider only:
        # with tracing off it is skipped entirely.
        telemetry={
            "tracer_provider": traces,
            "tracing": traces is not None,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    app.state.runtime = vitrine
    app.state.metrics = metrics
    app.state.keys = vitrine.keys
    app.state.imports = jobs
    app.state.change_feed = follower
    app.state.leadership = leadership
    app.state.rate_limiter = RateLimiter(
        vitrine.settings.api_rate_limit, vitrine.settings.api_rate_burst
    )
    app.state.demo = DemoShop(vitrine.settings)  # the demo storefront (off unless on)
    app.state.client_limiter = RateLimiter(  # storefront keys: per client address
        vitrine.settings.storefront_client_rate_limit,
        vitrine.settings.storefront_client_rate_burst,
    )

    install_problem_handlers(app)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        """People who open the service's address land in the admin UI."""
        return RedirectResponse("/admin", status_code=307)

    for router in (ops.router, products.router, search.router, imports.router):
        app.include_router(router)
    admin = install_admin(app, vitrine, metrics.registry)  # the web UI at /admin
    app.include_router(models.router)
    app.include_router(cnn.router)
    app.include_router(scenes.router)
    app.include_router(tryon.router)
    app.include_router(ads.router)
    app.include_router(job_routes.router)
    app.include_router(recommend_routes.router)
    app.include_router(webhooks.router)
    app.include_router(storefront_routes.router)  # product cards, the kit, the demo shop
    install_openapi(app)  # the shared problem schema and every operation's error responses

    app.add_middleware(
        BrowserCors,
        fixed=origins_of(vitrine.settings.cors_origins),
        storefront_fixed=origins_of(vitrine.settings.storefront_origins),
        storefront=vitrine.keys.storefront_origins,
    )

    app.add_middleware(
        ObservedRequests,
        metrics=metrics,
        max_body=vitrine.settings.max_request_bytes,
        max_import=vitrine.settings.max_import_bytes,
    )
    return app


def create_served_app() -> FastAPI:
    """The app as each ``vitrine serve`` process builds it (a uvicorn factory: with
    several workers every process configures itself from the same settings)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
