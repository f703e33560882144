"""A local Hugging Face Hub for tests: enough of the Hub HTTP API for the unmodified huggingface_hub client.

create repo -> preupload -> commit -> revision info / tree / commits -> resolve (download), so that `HfApi` uploads
and `from_pretrained(repo_id)` downloads work against 127.0.0.1. Every request is logged (method, path, headers), and
faults can be injected per route: `fail("commit", times=2)` answers 500 twice, `fail("commit")` forever.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, unquote, urlparse


def git_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    title: str
    description: str
    files: dict  # path -> bytes (the whole tree after this commit)
    date: float = field(default_factory=time.time)


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list = field(default_factory=list)

    @property
    def head(self) -> Commit:
        return self.commits[-1]


class Hub:
    def __init__(self, token: Optional[str] = None):
        self.token = token  # writes need "Authorization: Bearer <token>"
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.faults: dict[str, int] = {}  # route -> remaining failures (-1: forever)
        self.lock = threading.Lock()
        self.server: Optional[ThreadingHTTPServer] = None

    # -- test controls ---------------------------------------------------------------------------------------
    def fail(self, route: str, times: int = -1) -> None:
        self.faults[route] = times

    def heal(self) -> None:
        self.faults.clear()

    def reset(self) -> None:
        with self.lock:
            self.repos.clear()
            self.requests.clear()
            self.faults.clear()

    def start(self, port: int = 0) -> str:
        handler = type("Handler", (_Handler,), {"hub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _should_fail(self, route: str) -> bool:
        with self.lock:
            left = self.faults.get(route, 0)
            if left == 0:
                return False
            if left > 0:
                self.faults[route] = left - 1
            return True


REPO = r"(?P<repo>[^/]+/[^/]+|[^/]+)"
ROUTES = [
    ("POST", re.compile(r"^/api/repos/create$"), "create"),
    ("DELETE", re.compile(r"^/api/repos/delete$"), "delete"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("GET", re.compile(r"^/api/whoami-v2$"), "whoami"),
    ("POST", re.compile(rf"^/api/models/{REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"^/api/models/{REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
    ("GET", re.compile(rf"^/api/models/{REPO}/tree/(?P<rev>[^/]+)(?P<path>/.*)?$"), "tree"),
    ("GET", re.compile(rf"^/api/models/{REPO}/commits/(?P<rev>[^/]+)$"), "commits"),
    ("GET", re.compile(rf"^/api/models/{REPO}/revision/(?P<rev>[^/]+)$"), "info"),
    ("GET", re.compile(rf"^/api/models/{REPO}$"), "info"),
    ("GET", re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
    ("HEAD", re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
]


class _Handler(BaseHTTPRequestHandler):
    hub: Hub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        path = unquote(url.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.hub.requests.append((method, path, {k.lower(): v for k, v in self.headers.items()}))
        for m, pattern, name in ROUTES:
            match = pattern.match(path)
            if m == method and match:
                if self.hub._should_fail(name):
                    return self._json(500, {"error": "Internal Error (injected)"})
                return getattr(self, "do_" + name)(match.groupdict(), body, parse_qs(url.query), method)
        self._json(404, {"error": f"no route {method} {path}"}, error_code="EntryNotFound")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _send(self, status: int, body: bytes, content_type: str, headers: Optional[dict] = None,
              head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, data, error_code: Optional[str] = None, head: bool = False) -> None:
        headers = {"X-Error-Code": error_code, "X-Error-Message": data.get("error", "")} if error_code else {}
        self._send(status, json.dumps(data).encode(), "application/json", headers, head)

    def _authorized(self) -> bool:
        if self.hub.token is None:
            return True
        return self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _repo(self, repo_id: str, head: bool = False) -> Optional[Repo]:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            self._json(404, {"error": "Repository not found"}, error_code="RepoNotFound", head=head)
            return None
        return repo

    def _commit(self, repo: Repo, rev: str, head: bool = False) -> Optional[Commit]:
        rev = unquote(rev)
        if rev == "main":
            return repo.head
        for c in repo.commits:
            if c.oid == rev:
                return c
        self._json(404, {"error": f"Invalid rev id: {rev}"}, error_code="RevisionNotFound", head=head)
        return None

    # -- routes ------------------------------------------------------------------------------------------------
    def do_create(self, groups, body, query, method):
        if not self._authorized():
            return self._json(401, {"error": "Invalid credentials in Authorization header"})
        data = json.loads(body or b"{}")
        repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
        url = f"{self.hub.url}/{repo_id}"
        with self.hub.lock:
            if repo_id in self.hub.repos:
                return self._json(409, {"error": "You already created this model repo", "url": url})
            private = data.get("visibility", "private" if data.get("private") else "public") != "public"
            repo = Repo(repo_id, private)
            initial = Commit(git_sha1(repo_id.encode() + str(time.time()).encode()), "initial commit", "",
                             {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
            repo.commits.append(initial)
            self.hub.repos[repo_id] = repo
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def do_delete(self, groups, body, query, method):
        if not self._authorized():
            return self._json(401, {"error": "Invalid credentials in Authorization header"})
        data = json.loads(body or b"{}")
        repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
        self.hub.repos.pop(repo_id, None)
        self._json(200, {})

    def do_validate_yaml(self, groups, body, query, method):
        self._json(200, {"errors": [], "warnings": []})

    def do_whoami(self, groups, body, query, method):
        if self.hub.token is None or not self._authorized():
            return self._json(401, {"error": "Invalid credentials in Authorization header"})
        self._json(200, {"type": "user", "name": "tester", "fullname": "Test User", "orgs": [{"name": "acme"}],
                         "auth": {"type": "access_token", "accessToken": {"role": "write"}}})

    def do_preupload(self, groups, body, query, method):
        if not self._authorized():
            return self._json(401, {"error": "Invalid credentials in Authorization header"})
        repo = self._repo(groups["repo"])
        if repo is None:
            return
        files = json.loads(body)["files"]
        existing = repo.head.files
        self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                    "oid": git_sha1(existing[f["path"]]) if f["path"] in existing else None}
                                   for f in files], "commitOid": repo.head.oid})

    def do_commit(self, groups, body, query, method):
        if not self._authorized():
            return self._json(401, {"error": "Invalid credentials in Authorization header"})
        repo = self._repo(groups["repo"])
        if repo is None:
            return
        header, files, deleted = {}, {}, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            if item["key"] == "header":
                header = item["value"]
            elif item["key"] == "file":
                v = item["value"]
                files[v["path"]] = base64.b64decode(v["content"]) if v.get("encoding") == "base64" else \
                    v["content"].encode()
            elif item["key"] == "deletedFile":
                deleted.append(item["value"]["path"])
            else:
                return self._json(400, {"error": f"unsupported commit item {item['key']} (this test Hub only "
                                                 f"takes regular uploads)"})
        with self.hub.lock:
            tree = dict(repo.head.files)
            tree.update(files)
            for p in deleted:
                tree.pop(p, None)
            oid = hashlib.sha1(json.dumps([repo.head.oid, sorted((p, git_sha1(c)) for p, c in tree.items()),
                                           time.time()]).encode()).hexdigest()
            repo.commits.append(Commit(oid, header.get("summary", ""), header.get("description", ""), tree))
        self._json(200, {"success": True, "commitOid": oid, "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{oid}",
                         "hookOutput": ""})

    def do_info(self, groups, body, query, method):
        repo = self._repo(groups["repo"])
        if repo is None:
            return
        commit = self._commit(repo, groups.get("rev") or "main")
        if commit is None:
            return
        self._json(200, {"id": repo.repo_id, "modelId": repo.repo_id, "sha": commit.oid, "private": repo.private,
                         "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
                         "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date)),
                         "siblings": [{"rfilename": p} for p in sorted(commit.files)]})

    def do_tree(self, groups, body, query, method):
        repo = self._repo(groups["repo"])
        if repo is None:
            return
        commit = self._commit(repo, groups["rev"])
        if commit is None:
            return
        prefix = (groups.get("path") or "").strip("/")
        entries = [{"type": "file", "oid": git_sha1(c), "size": len(c), "path": p}
                   for p, c in sorted(commit.files.items()) if not prefix or p.startswith(prefix + "/")]
        self._json(200, entries)

    def do_commits(self, groups, body, query, method):
        repo = self._repo(groups["repo"])
        if repo is None:
            return
        self._json(200, [{"id": c.oid, "title": c.title, "message": c.description, "authors": [],
                          "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(c.date))}
                         for c in reversed(repo.commits)])

    def do_resolve(self, groups, body, query, method):
        head = method == "HEAD"
        repo = self._repo(groups["repo"], head=head)
        if repo is None:
            return
        commit = self._commit(repo, groups["rev"], head=head)
        if commit is None:
            return
        content = commit.files.get(groups["path"])
        if content is None:
            return self._json(404, {"error": "Entry not found"}, error_code="EntryNotFound", head=head)
        self._send(200, content, "application/octet-stream",
                   {"X-Repo-Commit": commit.oid, "ETag": f'"{git_sha1(content)}"'}, head=head)
