"""`pipeline browse`, the web side: serve the page and its JSON API on a local port, or write it as a static site.

Standard library (`http.server`): the page makes a handful of read-only GETs on one machine, which needs no
routing or templating a framework would add, and nothing to pin or to fetch offline. The page (browse.html)
has its scripts and styles inline and loads nothing from elsewhere.

    GET /                               the page
    GET /api/meta                       dataset, shards, splits, classes (colours, pixel shares), rejects, annotators
    GET /api/samples?split=&shard=&class=&min_share=&missing=&offset=&limit=    a page of sample records
    GET /api/rejects?reason=&offset=&limit=                                      ingest's rejects
    GET /media/<shard>/<key>.<jpg|seg.png|sketch.png|seg-overlay.png>            a picture, read by its offset
    GET /compare/<file>                 the "models" view: `pipeline compare`'s page and pictures, if it ran

The static site holds the same page, every sample's pictures under media/ (same paths) and data.js with the
records; its page filters them itself, as the server would, so it opens from disk (file://) with no server. It
copies `pipeline compare`'s page into compare/.
"""
import html
import json
import mimetypes
import shutil
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from tqdm import tqdm

from .browse import Dataset, Filters
from shardio.shards import atomic_path

PAGE = "browse.html"
COMPARE = "compare"  # the "models" view's folder on the site, `pipeline compare`'s output


def page_html() -> bytes:
    return (resources.files(__package__) / PAGE).read_bytes()


def no_comparison(dataset: Dataset) -> bytes:
    """The "models" view before `pipeline compare` ran: what to run."""
    name = html.escape(dataset.layout.dataset)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{name}: models</title></head>'
            f'<body data-ready="1"><h1>{name}: no comparison of the models yet</h1><p>Run <code>pipeline compare '
            f"--dataset {name}</code>: it writes the page this view shows.</p></body></html>").encode()


def comparison_file(dataset: Dataset, relative: str) -> Path | None:
    """A file of `pipeline compare`'s output folder named by a URL path under compare/, None if there is no such
    file (or the path leaves the folder)."""
    root = dataset.layout.comparison.resolve()
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def filters_from_query(query: dict[str, list[str]]) -> tuple[Filters, int, int]:
    """Filters, offset and limit from a query string; a malformed number raises ValueError naming the parameter."""
    def one(name):
        return query.get(name, [""])[0] or None

    def number(name, kind, default):
        try:
            return kind(one(name)) if one(name) is not None else default
        except ValueError:
            raise ValueError(f"{name}={one(name)!r}: not a number") from None

    return (Filters(split=one("split"), shard=one("shard"), cls=number("class", int, None),
                    min_share=number("min_share", float, 0.0), missing=one("missing")),
            number("offset", int, 0), number("limit", int, 50))


class Handler(BaseHTTPRequestHandler):
    """Answers the page's GETs from `self.server.dataset`."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        query = parse_qs(url.query)
        dataset: Dataset = self.server.dataset
        try:
            if url.path in ("/", "/index.html"):
                return self._send(page_html(), "text/html; charset=utf-8")
            if url.path == "/data.js":  # the static site's records; live, the page asks api/ instead
                return self._send(b"window.BROWSE_DATA = null;\n", "text/javascript")
            if url.path == "/api/meta":
                return self._json(dataset.meta())
            if url.path == "/api/samples":
                f, offset, limit = filters_from_query(query)
                return self._json(dataset.page(f, offset, limit))
            if url.path == "/api/rejects":
                _, offset, limit = filters_from_query(query)
                return self._json(dataset.rejects(query.get("reason", [None])[0], offset, limit))
            if url.path.startswith(f"/{COMPARE}/"):
                relative = unquote(url.path[len(COMPARE) + 2:]) or "index.html"
                found = comparison_file(dataset, relative)
                if found is None and relative == "index.html":
                    return self._send(no_comparison(dataset), "text/html; charset=utf-8")
                if found is not None:
                    return self._send(found.read_bytes(), mimetypes.guess_type(found.name)[0] or "text/plain")
                raise KeyError(relative)
            parts = url.path.split("/")
            if len(parts) == 4 and parts[1] == "media" and "." in parts[3]:
                key, name = parts[3].split(".", 1)
                return self._send(dataset.media(parts[2], key, name), mimetypes.guess_type(parts[3])[0])
        except ValueError as e:
            return self._send(json.dumps({"error": str(e)}).encode(), "application/json", HTTPStatus.BAD_REQUEST)
        except KeyError:
            pass
        self._send(b"not found", "text/plain", HTTPStatus.NOT_FOUND)

    def _json(self, body: dict) -> None:
        self._send(json.dumps(body).encode(), "application/json")

    def _send(self, body: bytes, kind: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # one line per request would drown the terminal
        pass


def make_server(dataset: Dataset, host: str, port: int) -> ThreadingHTTPServer:
    """A server for the page bound to host:port (port 0: any free one, see `server.server_address`)."""
    server = ThreadingHTTPServer((host, port), Handler)
    server.dataset = dataset
    return server


def write_site(dataset: Dataset, out: Path, progress: bool = True) -> int:
    """Write the page, every sample's pictures, data.js (meta, records, rejects) and the "models" view under
    `out`; returns samples."""
    records = []
    for shard in tqdm(dataset.stats, desc="browse", unit="shard", disable=not progress):
        for entry in dataset.index(shard)[0]:
            record = dataset.record(shard, entry)
            for name, url in record["media"].items():
                with atomic_path(out / url) as tmp:
                    tmp.write_bytes(dataset.media(shard.removesuffix(".tar"), entry.key, url.split(".", 1)[1]))
            records.append(record)
    data = {"meta": dataset.meta(), "samples": records, "rejects": dataset.reject_rows()}
    with atomic_path(out / "data.js") as tmp:
        tmp.write_text("window.BROWSE_DATA = " + json.dumps(data, separators=(",", ":")) + ";\n")
    with atomic_path(out / "index.html") as tmp:
        tmp.write_bytes(page_html())
    shutil.rmtree(out / COMPARE, ignore_errors=True)
    if (dataset.layout.comparison / "index.html").is_file():
        shutil.copytree(dataset.layout.comparison, out / COMPARE)
    else:
        with atomic_path(out / COMPARE / "index.html") as tmp:
            tmp.write_bytes(no_comparison(dataset))
    return len(records)
