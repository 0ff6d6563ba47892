"""The dashboard's pages and endpoints (Starlette), and the guard in front of them all:
the Host check, the session, the CSRF token and the headers every answer carries.

Pages are rendered on the server (Jinja2, autoescaped: a file name is text, never
markup); the one script (``static/app.js``) refreshes a page when the log moves and
drives the restore form.  No inline script or style: the Content-Security-Policy
allows only this server's own files.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from photod import instance, logs, statusconfig
from photod.catalog import CATALOG_NAME, Catalog
from photod.dashboard import data
from photod.dashboard.auth import COOKIE, Keys
from photod.dashboard.peer import answerable, owner_of
from photod.dashboard.restores import Restores
from photod.errors import PhotodError

if TYPE_CHECKING:
    from photod.config import Config
    from photod.thumbs import Thumbnails

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
STATIC = {"app.js": "text/javascript", "style.css": "text/css", "hidden.svg": "image/svg+xml",
          "none.svg": "image/svg+xml"}  # fmt: skip
SHA = frozenset("0123456789abcdef")
BODY_MAX = 1 << 22  # a restore of 60,000 photos at once


class Site:
    """What the pages read: the daemon's config, its live answer, the thumbnails."""

    def __init__(
        self,
        config: Callable[[], Config],
        live: Callable[[], dict[str, Any] | None],
        thumbs: Thumbnails,
        restores: Restores,
    ) -> None:
        self.config, self.live, self.thumbs, self.restores = config, live, thumbs, restores
        self._shared: Catalog | None = None
        self._opened: tuple[int, int] | None = None  # the file it reads: device, inode
        self._lock = threading.Lock()
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
        )
        self.env.filters["size"] = _size
        self.env.filters["when"] = lambda s: logs.local_time(s) if s else "never"

    def catalog(self) -> Catalog | None:
        db = self.config().state_dir / CATALOG_NAME
        return Catalog(db, readonly=True) if db.exists() else None

    def shared(self) -> Catalog | None:
        """One read-only connection the thumbnails share (its queries take a lock),
        opened again when the catalog is another file (a rebuild swaps a new one in,
        and the old one, renamed aside, must not be read on).  A request still using
        the old connection finishes on it; it closes when the last one lets go."""
        db = self.config().state_dir / CATALOG_NAME
        try:
            st = os.stat(db)
            now: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            now = None
        with self._lock:
            if now != self._opened:
                self._shared = Catalog(db, readonly=True) if now is not None else None
                self._opened = now  # (not when the open failed: asked again next time)
            return self._shared

    def held(self) -> dict[str, Any] | None:
        """Why photod does not act on its catalog now (found, fix), as `photod status`
        says it: the daemon's own word while it answers, else (starting, reloading,
        checking the catalog, rebuilding it: ``checking``) what the state dir shows (a
        missing catalog is told from a new installation by ``installation.json``);
        None when trusted."""
        live = self.live()
        if live and live.get("ok"):
            held = live.get("held")
            return {"found": str(held["found"]), "fix": str(held["fix"])} if held else None
        problem = instance.check_catalog(self.config().state_dir)
        return {"found": problem.found, "fix": problem.fix, "checking": True} if problem else None

    def make_thumb(self, catalog: Catalog, sha: str) -> bytes | None:
        cfg = self.config()
        where = data.thumbnail_sources(catalog, statusconfig.of(cfg), cfg.source_roots(), sha)
        return self.thumbs.get(sha, where)

    def close(self) -> None:
        with self._lock:
            if self._shared is not None:
                self._shared.close()

    def page(self, request: Request, name: str, **values: Any) -> HTMLResponse:
        sid = request.scope["photod.session"]
        keys: Keys = request.scope["photod.keys"]
        html = self.env.get_template(name).render(
            csrf=keys.csrf(sid), page=name.removesuffix(".html"), **values
        )
        return HTMLResponse(html)


def build(site: Site, keys: Keys, hosts: frozenset[str]) -> ASGIApp:
    def with_catalog(render: Callable[[Request, Catalog], Response]) -> Callable[..., Response]:
        def endpoint(request: Request) -> Response:
            try:
                held = site.held()  # (a lost catalog too: held, or being rebuilt)
                if held is not None:
                    return held_page(request, held)
                catalog = site.catalog()
                if catalog is None:  # a new installation: no photo recorded yet
                    return site.page(request, "empty.html")
                try:
                    return render(request, catalog)
                finally:
                    catalog.close()
            except PhotodError as exc:  # damaged, held, being rebuilt: said, not a 500
                page = site.page(request, "unreadable.html", why=str(exc))
                page.status_code = 503
                return page

        return endpoint

    def held_page(request: Request, held: Mapping[str, Any]) -> Response:
        """Why nothing is done and what fixes it: no page of photos from a catalog in
        doubt (an old one shows photos it lost, a missing one none)."""
        page = site.page(request, "held.html", held=held)
        page.status_code = 503
        return page

    def home(request: Request, catalog: Catalog) -> Response:
        settings = statusconfig.of(site.config())
        rep = data.report(settings, site.live())
        if rep["catalog_problem"]:  # (found since the page began: the same answer)
            return held_page(request, rep["catalog_problem"])
        days = data.chart(catalog, settings, data.today())
        top = max([d["protected"] + d["pending"] for d in days] + [1])
        return site.page(request, "home.html", r=rep, days=days, top=top)

    def unsafe(request: Request, catalog: Catalog) -> Response:
        settings = statusconfig.of(site.config())
        rep = data.report(settings, site.live())
        return site.page(request, "unsafe.html", r=rep, groups=data.unsafe(catalog, settings, rep))

    def phones(request: Request, catalog: Catalog) -> Response:
        settings = statusconfig.of(site.config())
        infos = catalog.counting(settings.target_infos(), settings.scrub_cycle)
        found = data.phones(catalog, settings.rule, infos)
        return site.page(request, "phones.html", phones=found)

    def library(request: Request, catalog: Catalog) -> Response:
        q = request.query_params
        settings = statusconfig.of(site.config())
        infos = catalog.counting(settings.target_infos(), settings.scrub_cycle)
        found = data.library(catalog, settings.rule, infos, q.get("month", ""),
                             q.get("album", ""), q.get("device", ""))  # fmt: skip
        return site.page(request, "library.html", lib=found)

    def asset(request: Request, catalog: Catalog) -> Response:
        sha = request.path_params["sha"]
        found = catalog.asset(sha) if _is_sha(sha) else None
        if found is None:
            return site.page(request, "missing.html")
        held = sorted(catalog.held_of(sha))
        timeline = data.events(site.config().log_dir, logs.Filter(asset=sha))
        return site.page(request, "asset.html", a=data._card(found), held=held, t=timeline)

    def events(request: Request) -> Response:
        q = request.query_params
        try:
            since = logs.parse_since(q["since"]) if q.get("since") else None
        except ValueError as exc:
            return site.page(request, "events.html", error=str(exc), ev=None, q=q)
        only = logs.Filter(since, q.get("failures") == "1", q.get("device") or None,
                           q.get("target") or None, q.get("asset") or None)  # fmt: skip
        return site.page(request, "events.html", ev=data.events(site.config().log_dir, only), q=q)

    async def thumb(request: Request) -> Response:
        # On the loop itself while the thumbnail is cached (a page asks for hundreds:
        # a hop to a thread each would cost more than the answer); made in a thread.
        sha = request.path_params["sha"]
        try:
            catalog = site.shared()
            if not _is_sha(sha) or catalog is None:
                return Response(status_code=404)
            if data.hidden(catalog, sha):
                return _static("hidden.svg", private=True)
            got = site.thumbs.cached(sha)
            if got is None:
                got = await run_in_threadpool(site.make_thumb, catalog, sha)
        except PhotodError:  # damaged, held, being rebuilt: no picture now (no traceback)
            return Response(status_code=503, headers={"cache-control": "no-store"})
        if got is None:
            return _static("none.svg", private=True)
        return Response(got, media_type="image/jpeg",
                        headers={"cache-control": "private, max-age=86400"})  # fmt: skip

    async def restore(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > BODY_MAX:
            return JSONResponse({"error": "too many photos at once"}, status_code=413)
        # A urlencoded body, read here (Starlette's form parser needs python-multipart).
        form = urllib.parse.parse_qs((await request.body())[:BODY_MAX].decode("utf-8", "replace"))
        dest, why = _destination(form.get("dest", [""])[0].strip())
        chosen = frozenset(s for s in form.get("assets", [""])[0].split(",") if _is_sha(s))
        if dest is None:
            return JSONResponse({"error": why}, status_code=400)
        if not _may_write(request.scope["photod.uid"], dest):
            return JSONResponse({"error": f"{dest} is not a folder of yours: restore into "
                                 "one you own (or with `photod restore`)"}, status_code=403)  # fmt: skip
        if not chosen:
            return JSONResponse({"error": "choose at least one photo"}, status_code=400)
        uid = request.scope["photod.uid"]
        owner = uid if os.geteuid() == 0 and uid not in (None, 0) else None  # (written as theirs)
        job = site.restores.start(site.config(), dest, chosen, owner)
        if job is None:
            return JSONResponse({"error": "a restore is running: wait for it to end"},
                                status_code=429)  # fmt: skip
        return JSONResponse(job.view())

    def restore_progress(request: Request) -> Response:
        job = site.restores.get(int(request.path_params["job"]))
        return JSONResponse(job.view()) if job else JSONResponse({}, status_code=404)

    def changes(request: Request) -> Response:
        """A token that moves whenever the daemon logs something: pages poll it."""
        try:
            st = os.stat(site.config().log_dir / logs.LOG_NAME)
            token = f"{st.st_size}-{st.st_mtime_ns}"
        except OSError:
            token = ""
        return JSONResponse({"token": token})

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        return _static(name) if name in STATIC else Response(status_code=404)

    def login(request: Request) -> Response:
        token = request.query_params.get("t", "")
        uid = request.scope["photod.uid"]
        server = request.scope.get("server")
        if not keys.genuine(token, "login"):
            return _spent()
        if uid is None and server and answerable(tuple(server)):  # (no one's: any thief's)
            return HTMLResponse(
                "<!doctype html><title>photod</title><p>photod could not tell who opened "
                "this connection; the link is still good: open it again.</p>", status_code=503
            )  # fmt: skip
        cookie = keys.take_login(token, uid)
        if cookie is None:
            return _spent()
        out = RedirectResponse("/", status_code=303)
        out.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", path="/")
        return out

    routes = [
        Route("/", with_catalog(home)),
        Route("/unsafe", with_catalog(unsafe)),
        Route("/phones", with_catalog(phones)),
        Route("/library", with_catalog(library)),
        Route("/asset/{sha}", with_catalog(asset)),
        Route("/events", events),
        Route("/thumb/{sha}", thumb),
        Route("/restore", restore, methods=["POST"]),
        Route("/restore/{job:int}", restore_progress),
        Route("/api/changes", changes),
        Route("/static/{name}", static),
        Route("/login", login),
    ]
    return Guard(Starlette(routes=routes), keys, hosts)


class Guard:
    """In front of every request: a foreign Host is refused (403) before anything
    else; then everything but /login needs the session (401); a request that changes
    anything needs the CSRF token and no foreign Origin (403).  Every answer gets the
    security headers; no CORS header is ever sent."""

    def __init__(self, app: ASGIApp, keys: Keys, hosts: frozenset[str]) -> None:
        self.app, self.keys, self.hosts = app, keys, hosts
        self.origins = frozenset(f"http://{h}" for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request = Request(scope)
        problem = await self._problem(scope, headers, request)
        if problem is not None:
            code, text = problem
            await _plain(code, text)(scope, receive, _with_headers(send))
            return
        scope["photod.keys"] = self.keys
        await self.app(scope, receive, _with_headers(send))

    async def _problem(
        self, scope: Scope, headers: dict[str, str], request: Request
    ) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if host not in self.hosts:
            return 403, "this dashboard answers only at its own loopback address"
        scope["photod.uid"] = None
        login = scope["path"] == "/login" and scope["method"] == "GET"
        token, kind = (request.query_params.get("t"), "login") if login else (
            request.cookies.get(COOKIE), "session")  # fmt: skip
        # The kernel is asked who sent it only for what this dashboard signed: where it
        # must read its whole table of sockets, a stranger's request would make it do so.
        if self.keys.genuine(token, kind):
            client, server = scope.get("client"), scope.get("server")
            if client and server:
                scope["photod.uid"] = await owner_of(tuple(client), tuple(server))
        if login:
            return None
        sid = self.keys.session(token, scope["photod.uid"])
        if sid is None:
            return 401, "not logged in: run `photod dashboard` for a login link"
        scope["photod.session"] = sid
        if scope["method"] not in ("GET", "HEAD"):
            if headers.get("origin", f"http://{host}") not in self.origins:
                return 403, "a request from another site is refused"
            if not self.keys.csrf_ok(sid, headers.get("x-csrf-token")):
                return 403, "the page's CSRF token is missing or wrong: reload the page"
        return None


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            have = {k.lower() for k, _ in message.get("headers", [])}
            message["headers"] = [*message.get("headers", []),
                                  *((k, v) for k, v in HEADERS if k not in have)]  # fmt: skip
        await send(message)

    return wrapped


def _spent() -> Response:
    return HTMLResponse(
        "<!doctype html><title>photod</title><p>This login link is used up or too "
        "old. Run <code>photod dashboard</code> for a new one.</p>", status_code=401
    )  # fmt: skip


def _plain(code: int, text: str) -> Response:
    return Response(json.dumps({"error": text}), status_code=code, media_type="application/json")


def _static(name: str, private: bool = False) -> Response:
    body = (HERE / "static" / name).read_bytes()
    cache = "private, max-age=3600" if private else "no-cache"
    return Response(body, media_type=STATIC[name], headers={"cache-control": cache})


def _destination(typed: str) -> tuple[Path | None, str]:
    """The folder a restore goes into, as typed on the page; else None and why not (a
    name no folder can have, a ``~user`` of no user here: said, never a crash)."""
    full = "give the folder as a full path, like /home/me/Restored"
    if "\0" in typed:
        return None, f"a folder's name cannot hold a NUL character: {full}"
    try:
        dest = Path(typed).expanduser()
    except RuntimeError:  # (~name of no user here, or no home folder known for ~)
        who = typed[1:].split("/", 1)[0]
        said = f"there is no user named {who!r} here" if who else "no home folder is known"
        return None, f"{said}: {full}"
    return (dest, "") if dest.is_absolute() else (None, full)


def _may_write(uid: int | None, dest: Path) -> bool:
    """Whether the person on the page may have a restore written at ``dest``: a daemon
    of their own writes as them; a root daemon only into a folder the logged-in user
    owns (the nearest one that exists), root's own session anywhere.  A first answer,
    by the path; the restore judges again by the folder it writes through (``owner``)."""
    if os.geteuid() != 0 or uid == 0:
        return True
    if uid is None:
        return False  # who is asking is not known here: no root writes for them
    for folder in (dest, *dest.parents):
        try:
            return os.lstat(folder).st_uid == uid
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return False


def _is_sha(text: str) -> bool:
    return len(text) == 64 and set(text) <= SHA


def _size(n: int) -> str:
    from photod.policy import size

    return size(int(n))
