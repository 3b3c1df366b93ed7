"""The interactive API docs (/docs: Swagger UI, /redoc: ReDoc), served whole by the service itself.

FastAPI's own pages load their scripts and styles from a public CDN, which a closed network cannot
reach. Here the pages are FastAPI's (get_swagger_ui_html, get_redoc_html), pointed at copies of the
assets that a PyPI package ships (fastapi-offline: Swagger UI 5, ReDoc 2, a favicon; it is updated
with each upstream release), mounted under /docs/assets. Nothing on these pages comes from another
host, so the Content-Security-Policy (service/http_security.py) names no other host.
"""

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs/assets"
# The package's folder of assets, and the ones the pages load from it.
ASSETS_PACKAGE = ("fastapi_offline", "static")
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")

SWAGGER_UI_PARAMETERS = {
    # Swagger UI's validator badge would send the spec to a public validator.
    "validatorUrl": None,
    # Keep the token got through "Authorize" across reloads of the page.
    "persistAuthorization": True,
}


def install(app: FastAPI) -> None:
    """Call on an app created with docs_url=None and redoc_url=None (FastAPI's documented way to
    serve the docs assets yourself)."""
    app.mount(ASSETS_URL, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )


def missing_assets() -> list[str]:
    """The assets the installed package lacks (the image build checks there are none)."""
    package, folder = ASSETS_PACKAGE
    return [name for name in ASSET_FILES if not (files(package) / folder / name).is_file()]
