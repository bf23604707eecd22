"""A FastAPI application in front of oauth-manager, as the host application runs it.

Two things a host application does with oauth-manager:

* it proxies the frontend's requests under /api/v1/oauth/ to oauth-manager, so the browser sees
  one origin (its own) and receives oauth-manager's cookies;
* its backend asks oauth-manager for a fresh access token, as a service, and calls the provider
  with it (here: the provider's userinfo endpoint).

Settings (environment):
    OAUTH_MANAGER_URL       where oauth-manager listens (default http://127.0.0.1:8000)
    OAUTH_SERVICE_API_KEY   one of oauth-manager's OAUTH_SERVICE_API_KEYS
    PROFILE_URL_<PROVIDER>  the provider's userinfo URL, e.g. PROFILE_URL_GOOGLE

Run: uvicorn app:app --no-proxy-headers --port 8080 (README.md).
"""

import os
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse

OAUTH_MANAGER_URL = os.environ.get("OAUTH_MANAGER_URL", "http://127.0.0.1:8000").rstrip("/")
OAUTH_SERVICE_API_KEY = os.environ.get("OAUTH_SERVICE_API_KEY", "")

# What the browser sent that oauth-manager needs: who the user is (Authorization, Cookie: the
# access_token cookie and the flow cookie), where the request comes from (Origin: oauth-manager's
# same-origin check; Referer and Sec-Fetch-Site: an authorization link opened from another site's
# page is refused), and what the body is and wants.
FORWARDED_REQUEST_HEADERS = (
    "authorization",
    "cookie",
    "origin",
    "referer",
    "sec-fetch-site",
    "accept",
    "content-type",
    "user-agent",
)
# What oauth-manager answers that the browser needs. Set-Cookie is handled on its own, below.
RETURNED_RESPONSE_HEADERS = ("content-type", "location", "cache-control", "retry-after")


@asynccontextmanager
async def lifespan(app: FastAPI):
    # One client (one connection pool) for the application's life. Redirects are the browser's
    # business: oauth-manager's 303s go back to it untouched.
    app.state.oauth_manager = httpx.AsyncClient(follow_redirects=False, timeout=30.0)
    yield
    await app.state.oauth_manager.aclose()


app = FastAPI(title="oauth-manager behind FastAPI", lifespan=lifespan)

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@app.api_route("/api/v1/oauth/{path:path}", methods=METHODS)
async def oauth_api(request: Request) -> Response:
    """The frontend's oauth-manager API, passed through."""
    return await forward(request)


# Sandbox mode only: oauth-manager serves its provider emulators under /_sandbox and builds their
# URLs from PUBLIC_BASE_URL, which is this proxy. The browser's consent page and oauth-manager's own
# token requests therefore come through here too. With the sandbox off oauth-manager answers 404.
@app.api_route("/_sandbox/{path:path}", methods=METHODS)
async def sandbox(request: Request) -> Response:
    """oauth-manager's sandbox provider emulators, passed through."""
    return await forward(request)


async def forward(request: Request) -> Response:
    """Sends `request` on to oauth-manager and its answer back (buffered: the bodies are small)."""
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    # Who the client is, for oauth-manager's audit log and rate limits. oauth-manager believes
    # these only from a proxy listed in its OAUTH_TRUSTED_PROXIES. The client's address is appended
    # to what earlier proxies wrote, never put in place of it.
    client_address = request.client.host if request.client else "unknown"
    earlier = request.headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{earlier}, {client_address}" if earlier else client_address
    headers["x-forwarded-proto"] = request.url.scheme
    headers["x-forwarded-host"] = request.headers.get("host", "")

    # The path exactly as the client wrote it (percent-escapes kept), and its query string.
    url = OAUTH_MANAGER_URL + request.scope["raw_path"].decode("latin-1")
    if request.url.query:
        url += "?" + request.url.query
    try:
        upstream = await request.app.state.oauth_manager.request(
            request.method, url, headers=headers, content=await request.body()
        )
    except httpx.TransportError:
        return problem(502, "oauth_manager_unavailable", "oauth-manager cannot be reached; try again.")

    response = Response(content=upstream.content, status_code=upstream.status_code)
    for name in RETURNED_RESPONSE_HEADERS:
        if name in upstream.headers:
            response.headers[name] = upstream.headers[name]
    # Each cookie in its own Set-Cookie header: merged into one line (as a dict of headers would
    # do), browsers read only the first. /initiate's flow cookie must reach the browser, or the
    # callback is refused as coming from another browser (state_not_bound).
    for cookie in upstream.headers.get_list("set-cookie"):
        response.headers.append("set-cookie", cookie)
    return response


@app.get("/example/profile/{user_id}/{provider}")
async def profile(
    request: Request, user_id: int, provider: str = Path(pattern="^[a-z][a-z0-9_-]*$")
) -> Response:
    """The user's profile at `provider`, read with a token from oauth-manager (a backend's use)."""
    client: httpx.AsyncClient = request.app.state.oauth_manager
    token = await client.get(
        f"{OAUTH_MANAGER_URL}/api/v1/oauth/users/{user_id}/integrations/{provider}/token",
        headers={"authorization": f"Bearer {OAUTH_SERVICE_API_KEY}"},
    )
    if token.status_code != 200:
        # Not connected, needs re-authorization, ...: oauth-manager's problem JSON as it is.
        return Response(
            content=token.content,
            status_code=token.status_code,
            media_type=token.headers.get("content-type", "application/problem+json"),
        )

    profile_url = os.environ.get(f"PROFILE_URL_{provider.upper()}")
    if not profile_url:
        return problem(404, "no_profile_url", f"PROFILE_URL_{provider.upper()} is not set.")
    answer = await client.get(profile_url, headers={"authorization": f"Bearer {token.json()['access_token']}"})
    if answer.status_code != 200:
        return problem(502, "provider_error", f"{provider} answered {answer.status_code} for the profile.")
    return JSONResponse(answer.json())


def problem(status: int, code: str, detail: str) -> JSONResponse:
    """An RFC 9457 problem answer shaped like oauth-manager's own."""
    body = {"type": f"urn:example:problem:{code}", "title": code, "status": status, "detail": detail, "code": code}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")
