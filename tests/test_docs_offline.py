"""/docs and /redoc on a closed network: every script, style and image the pages load comes from the
service itself, the Content-Security-Policy lets in exactly that, and "Authorize" signs a staff user in
with the OAuth2 password flow against our own token endpoint."""

import asyncio
import json
import re
from html.parser import HTMLParser

import pytest

from service.auth import users
from tests.browser import chromium, devtools_page, render
from tests.conftest import in_app
from tests.processes import live_api

ASSETS = {
    "/docs/assets/swagger-ui-bundle.js": "text/javascript",
    "/docs/assets/swagger-ui.css": "text/css",
    "/docs/assets/redoc.standalone.js": "text/javascript",
    "/docs/assets/favicon.png": "image/png",
}


class _References(HTMLParser):
    """Every URL a page loads by itself: src= of scripts and images, href= of stylesheets and icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        for name in ("src", "href", "spec-url"):
            if values.get(name):
                self.urls.append(values[name])


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_only_same_origin_assets(client, page):
    answer = client.get(page)

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    urls = references(answer.text)
    assert urls, "the page loads its script"
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
    # Nothing names another host, inline script included (no CDN, no font service, no validator).
    assert not re.search(r"https?://", answer.text), re.findall(r"https?://[^\s'\"]+", answer.text)
    assert "/openapi.json" in answer.text


def test_docs_pages_load_the_assets_the_service_serves(client):
    loaded = set()
    for page in ("/docs", "/redoc"):
        loaded |= {url for url in references(client.get(page).text) if url != "/openapi.json"}
    assert loaded == set(ASSETS)


@pytest.mark.parametrize("path", sorted(ASSETS))
def test_each_docs_asset_answers_200_with_its_content_type(client, path):
    answer = client.get(path)

    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] == ASSETS[path]
    assert len(answer.content) > 1000
    assert "etag" in answer.headers  # a browser revalidates rather than downloading 2.5 MB again


def test_swagger_ui_is_a_version_that_reads_openapi_3_1(client):
    """FastAPI's spec is OpenAPI 3.1, which Swagger UI renders from version 5 on."""
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    assert "isOAS31" in client.get("/docs/assets/swagger-ui-bundle.js").text


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js"])
def test_content_security_policy_allows_the_docs_assets_and_no_other_host(client, page):
    policy = csp_directives(client.get(page).headers["content-security-policy"])

    for directive in ("default-src", "script-src", "style-src", "img-src", "connect-src"):
        assert "'self'" in policy[directive], directive
    # Only this origin, inline code (FastAPI's pages start Swagger UI inline), data: icons and
    # ReDoc's in-page search worker: no host, no scheme that reaches one, no wildcard.
    allowed = {"'self'", "'unsafe-inline'", "'none'", "data:", "blob:"}
    for directive, sources in policy.items():
        assert set(sources) <= allowed, (directive, sources)
    assert "blob:" in policy["worker-src"] and "blob:" not in policy["script-src"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_swagger_ui_oauth2_redirect_page_is_served(client):
    answer = client.get("/docs/oauth2-redirect")

    assert answer.status_code == 200
    assert "oauth2" in answer.text.lower()
    assert not re.search(r"https?://", answer.text)


def test_openapi_spec_offers_the_oauth2_password_flow_beside_the_other_schemes(client):
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]

    (oauth2,) = [scheme for scheme in schemes.values() if scheme["type"] == "oauth2"]
    assert oauth2["flows"]["password"]["tokenUrl"] == "/v1/auth/token"
    assert oauth2["flows"]["password"]["refreshUrl"] == "/v1/auth/token"
    names = {name for name, scheme in schemes.items() if scheme["type"] == "oauth2"}
    assert {"APIKeyHeader", "HTTPBearer"} <= set(schemes)
    # Every operation that takes a staff token lists the password flow as a way to get one.
    operations = [op for path in spec["paths"].values() for op in path.values() if isinstance(op, dict)]
    offered = [{name for requirement in op.get("security", []) for name in requirement} for op in operations]
    taking_tokens = [schemes for schemes in offered if "HTTPBearer" in schemes]
    assert len(taking_tokens) >= 20
    assert all(names <= schemes and "APIKeyHeader" in schemes for schemes in taking_tokens)
    # Its token endpoint documents the OAuth2 error members of its refusals.
    token = spec["paths"]["/v1/auth/token"]["post"]["responses"]
    assert token["400"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/TokenProblem")
    assert "error" in spec["components"]["schemas"]["TokenProblem"]["properties"]


def browser_for(settings) -> str:
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    if settings.is_sqlite:
        pytest.skip("one browser run is enough: the pages do not depend on the database")
    return browser


def test_docs_render_in_a_browser_on_a_closed_network(settings, tmp_path):
    browser = browser_for(settings)
    with live_api(settings, tmp_path) as base:
        swagger, swagger_console = render(browser, f"{base}/docs", tmp_path / "profile-docs")
        redoc, redoc_console = render(browser, f"{base}/redoc", tmp_path / "profile-redoc")

    # Swagger UI drew every operation, and offers "Authorize".
    assert swagger.count('class="opblock-summary-path"') >= 40
    assert "btn authorize" in swagger
    assert "Content Security Policy" not in swagger_console, swagger_console
    # ReDoc drew the API; the only thing the policy stopped is ReDoc's own advert, an image on
    # another host, which hides itself when it cannot load.
    assert "Citizen Feedback Intake" in redoc and "/v1/auth/token" in redoc
    for line in redoc_console.splitlines():
        if "Content Security Policy" in line:
            assert "cdn.redoc.ly/redoc/logo-mini.svg" in line, line


OAUTH2_BOX = (
    "[...document.querySelectorAll('.auth-container')].find(box => box.textContent.includes('OAuth2PasswordBearer'))"
)
ME = "#operations-auth-me_v1_auth_me_get"


async def authorize_in_swagger_ui(page, base: str, username: str, password: str) -> str:
    """Open /docs, press Authorize, sign in with the password flow; the OAuth2 box's text after."""
    await page.goto(f"{base}/docs")
    await page.until("!!document.querySelector('.btn.authorize')")
    await page.js("document.querySelector('.btn.authorize').click()")
    await page.until("!!document.querySelector('#oauth_username')")
    await page.type_into("#oauth_username", username)
    await page.type_into("#oauth_password", password)
    await page.js(f"{OAUTH2_BOX}.querySelector('.btn.modal-btn.auth.authorize').click()")
    return await page.until(
        f"(() => {{ const text = {OAUTH2_BOX}.textContent;"
        " return (text.includes('Logout') || text.toLowerCase().includes('auth error')) && text; })()"
    )


async def try_me_out(page) -> str:
    """Close the dialog, then "Try it out" and "Execute" on GET /v1/auth/me; the response body."""
    await page.js("document.querySelector('.modal-ux .close-modal').click()")
    await page.js(f"document.querySelector('{ME} .opblock-summary-control').click()")
    await page.until(f"!!document.querySelector('{ME} .try-out__btn')")
    await page.js(f"document.querySelector('{ME} .try-out__btn').click()")
    await page.until(f"!!document.querySelector('{ME} .btn.execute')")
    await page.js(f"document.querySelector('{ME} .btn.execute').click()")
    return await page.until(
        f"(() => {{ const body = document.querySelector('{ME} .live-responses-table .response .microlight');"
        " return body && body.textContent; })()"
    )


def test_authorize_signs_a_staff_user_in_with_the_password_flow_in_swagger_ui(settings, client, tmp_path):
    browser = browser_for(settings)
    password = "a long staff password"
    in_app(client, lambda s: users.create(s, username="swagger.officer", password=password, role="dispatcher"))

    async def visit(base: str) -> tuple[str, str, str]:
        async with devtools_page(browser, tmp_path / "refused") as page:
            refused = await authorize_in_swagger_ui(page, base, "swagger.officer", "not the password")
        async with devtools_page(browser, tmp_path / "signed-in") as page:
            signed_in = await authorize_in_swagger_ui(page, base, "swagger.officer", password)
            me = await try_me_out(page)
        return refused, signed_in, me

    with live_api(settings, tmp_path) as base:
        refused, signed_in, me = asyncio.run(visit(base))

    # A wrong password: Swagger UI reads the OAuth2 error members of our problem details.
    assert "invalid_grant" in refused and "Wrong username or password." in refused
    # The right one: signed in, and the token it got is the one it sends.
    assert "Authorized" in signed_in and "Logout" in signed_in
    assert json.loads(me) == {"kind": "staff", "name": "swagger.officer", "role": "dispatcher", "department_code": None}
