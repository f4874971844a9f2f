"""Mounting the admin UI on the service's FastAPI app: routers, static files, errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from vitrine.accounts.sessions import SessionService
from vitrine.accounts.setup_token import SetupToken
from vitrine.accounts.users import UserService
from vitrine.admin.customers import CustomerDirectory
from vitrine.admin.monitor import SystemMonitor
from vitrine.admin.ports import (
    AdminBackends,
    ClassifierFeedback,
    LabelAgreementInsights,
    RegistryInsights,
)
from vitrine.admin.product_view import ProductPages
from vitrine.admin.recommendations import ServiceRecommendations
from vitrine.admin.review import ReviewQueue
from vitrine.admin.routes import (
    ab_tests,
    ads,
    analytics,
    auth,
    catalog,
    customers,
    exports,
    keys,
    models,
    monitoring,
    overview,
    recommendations,
    review,
    search,
    tryon,
    upload,
    webhooks,
)
from vitrine.admin.security import Forbidden, SignInRequired, login_redirect
from vitrine.admin.shop_analytics import ShopAnalytics
from vitrine.admin.templating import make_templates, render
from vitrine.catalog.browse import CatalogBrowser
from vitrine.classify.label_metrics import LabelStatistics
from vitrine.recommend.activity import ShopActivity
from vitrine.recommend.customer_log import CustomerLog
from vitrine.runtime import Runtime
from vitrine.vision.features import FEATURE_VERSION

STATIC = Path(__file__).parent / "static"


@dataclass
class AdminUI:
    """The admin UI's parts, built once per app and kept on ``app.state.admin``."""

    vitrine: Runtime
    users: UserService
    sessions: SessionService
    browser: CatalogBrowser
    templates: Jinja2Templates
    monitor: SystemMonitor
    backends: AdminBackends
    label_stats: LabelStatistics
    customers: CustomerDirectory
    activity: ShopAnalytics
    product_pages: ProductPages
    review: ReviewQueue
    setup: SetupToken

    def start(self) -> None:
        if not self.users.has_admin():  # the first admin is made in the browser
            self.setup.ensure()
        self.monitor.start()

    def stop(self) -> None:
        self.monitor.stop()


def install_admin(app: FastAPI, vitrine: Runtime, registry: object) -> AdminUI:
    """Add /admin to ``app``; call ``start()`` / ``stop()`` from the app's lifespan."""
    s = vitrine.settings
    label_stats = LabelStatistics(vitrine.engine)
    browser = CatalogBrowser(vitrine.engine, FEATURE_VERSION)
    feedback = ClassifierFeedback(vitrine.classification)
    ui = AdminUI(
        vitrine=vitrine,
        users=UserService(vitrine.engine, s.admin_lockout_attempts, s.admin_lockout_minutes),
        sessions=SessionService(vitrine.engine, s.admin_session_hours),
        browser=browser,
        templates=make_templates(),
        monitor=SystemMonitor(
            vitrine,
            registry,
            recall_minutes=s.admin_recall_check_minutes,  # type: ignore[arg-type]
        ),
        backends=AdminBackends(
            labels=feedback,
            classification=RegistryInsights(
                vitrine.classification, LabelAgreementInsights(label_stats)
            ),
            recommendations=ServiceRecommendations(vitrine.recommendations),
        ),
        label_stats=label_stats,
        customers=CustomerDirectory(CustomerLog(vitrine.engine), browser),
        activity=ShopAnalytics(ShopActivity(vitrine.engine), browser),
        product_pages=ProductPages(vitrine, browser, s.admin_product_columns),
        review=ReviewQueue(browser, feedback, vitrine.classification),
        setup=SetupToken(s.home),
    )
    app.state.admin = ui
    app.mount("/admin/static", StaticFiles(directory=STATIC), name="admin-static")
    for module in (
        auth,
        overview,
        exports,  # /admin/catalog/labels.csv before catalog's /admin/catalog/{id}
        catalog,
        review,
        search,
        tryon,
        ads,
        upload,
        recommendations,
        ab_tests,
        customers,
        analytics,
        models,
        monitoring,
        webhooks,
        keys,
    ):
        app.include_router(module.router, include_in_schema=False)

    async def sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        target = login_redirect(exc.next_path)
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def forbidden(request: Request, exc: Exception) -> HTMLResponse:
        return render(request, "error.html", 403, title="Not allowed", message=str(exc))

    app.add_exception_handler(SignInRequired, sign_in_required)
    app.add_exception_handler(Forbidden, forbidden)
    return ui
