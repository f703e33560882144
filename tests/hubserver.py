"""A local Hugging Face Hub for tests: enough of the Hub HTTP API for the unmodified huggingface_hub client.

create repo -> validate-yaml -> preupload -> LFS batch/upload/verify -> commit -> revision info / tree / commits ->
resolve (download), so that `HfApi` uploads and `from_pretrained(repo_id)` downloads work against 127.0.0.1 and take
the same paths they take against the real Hub:

- `preupload` answers "lfs" for binary files (the LFS extensions below, NUL bytes in the sample, or over 10 MB) and
  "regular" for text. With `HF_HUB_DISABLE_XET=1` (tests/conftest.py) the client then runs the classic git-LFS batch:
  `POST /{repo}.git/info/lfs/objects/batch` -> `PUT` to the upload href -> `POST` verify; the commit names the object
  by its sha256 in an `lfsFile` line. Objects are kept by sha256; a commit naming an object this repo never received
  is refused, as on the Hub. `Commit.lfs` records which paths arrived through LFS.
- `resolve` of an LFS file answers 302 to a second port (the "CDN", a different origin, so the client drops the token
  and takes `X-Linked-Etag`/`X-Linked-Size` from the redirect, as with the Hub's CDN); regular files are served
  directly. No response ever carries Xet headers.
- README.md front matter is validated on `POST /api/validate-yaml` and again when a commit adds README.md: invalid
  YAML, a malformed `model-index`, non-numeric metric values, a `base_model` that is not an existing model (repos on
  this Hub plus `known_models`), an unknown `license` or `pipeline_tag`, or `tags` that are not strings -> HTTP 400.

Every request is logged (method, path, headers), and faults can be injected per route: `fail("commit", times=2)`
answers 500 twice, `fail("commit")` forever, and `echo_authorization("create")` answers 401 quoting the request's
Authorization header. Refused cards are logged in `rejections`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, unquote, urlparse

import yaml  # PyYAML: a dependency of huggingface_hub


def git_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


# --- what the Hub stores through LFS ---------------------------------------------------------------------------------

LFS_EXTENSIONS = (".safetensors", ".bin", ".onnx", ".pt", ".h5", ".msgpack", ".npz")
LFS_SIZE_LIMIT = 10 * 1024 * 1024  # the Hub's: larger files go to LFS whatever their type


def is_lfs(path: str, size: int, sample: bytes) -> bool:
    return path.endswith(LFS_EXTENSIONS) or size > LFS_SIZE_LIMIT or b"\0" in sample


GITATTRIBUTES = "".join(f"*{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in LFS_EXTENSIONS).encode()


# --- what the Hub accepts in a README's front matter -----------------------------------------------------------------

# The Hub's license identifiers (https://huggingface.co/docs/hub/repositories-licenses); huggingface_hub ships no list.
LICENSES = frozenset("""
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5
cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0
cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0
cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl
lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openrail++
osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license llama2 llama3 llama3.1 llama3.2
llama3.3 llama4 gemma unknown other
""".split())

# The Hub's pipeline tags (tasks), https://huggingface.co/tasks
PIPELINE_TAGS = frozenset("""
text-classification token-classification table-question-answering question-answering zero-shot-classification
translation summarization feature-extraction text-generation text2text-generation fill-mask sentence-similarity
text-ranking text-to-speech text-to-audio automatic-speech-recognition audio-to-audio audio-classification
voice-activity-detection depth-estimation image-classification object-detection image-segmentation text-to-image
image-to-text image-to-image image-to-video unconditional-image-generation video-classification
reinforcement-learning robotics tabular-classification tabular-regression tabular-to-text table-to-text
multiple-choice text-retrieval time-series-forecasting text-to-video image-text-to-text visual-question-answering
document-question-answering zero-shot-image-classification graph-ml mask-generation zero-shot-object-detection
text-to-3d image-to-3d image-feature-extraction video-text-to-text keypoint-detection visual-document-retrieval
any-to-any video-to-video other
""".split())

# Models that exist on the real Hub and that tests may name as base_model; repos created on this Hub count too.
KNOWN_MODELS = frozenset({
    "google-bert/bert-base-uncased", "bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2",
    "google/bert_uncased_L-2_H-128_A-2", "google/bert_uncased_L-4_H-256_A-4", "google/bert_uncased_L-4_H-512_A-8",
    "google/bert_uncased_L-8_H-512_A-8", "textattack/bert-base-uncased-SST-2", "distilbert/distilbert-base-uncased",
    "huawei-noah/TinyBERT_General_4L_312D",
})


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a repeated key is an error (as in the Hub's js-yaml), not "the last one wins"."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicated mapping key {key!r}",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def card_errors(content: str, known_model) -> list[str]:
    """What the Hub would refuse in README.md's YAML front matter (an empty list: it is accepted)."""
    from huggingface_hub.repocard import REGEX_YAML_BLOCK
    from huggingface_hub.repocard_data import model_index_to_eval_results
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    match = REGEX_YAML_BLOCK.search(content)
    if not match:
        return []
    try:
        meta = yaml.load(match.group(2), Loader=_StrictLoader)
    except yaml.YAMLError as e:
        return [f"Invalid YAML in README.md metadata: {' '.join(str(e).split())}"]
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["README.md metadata must be a YAML mapping"]
    errors = []

    def strings(key: str, allow_str: bool) -> Optional[list]:
        v = meta.get(key)
        if v is None:
            return None
        if allow_str and isinstance(v, str):
            return [v]
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
        errors.append(f'"{key}" must be {"a string or " if allow_str else ""}a list of strings, got {v!r}')
        return None

    for model in strings("base_model", allow_str=True) or []:
        try:
            validate_repo_id(model)
        except HFValidationError:
            errors.append(f'"base_model" with value "{model}" is not a valid model id (malformed)')
            continue
        if not known_model(model):
            errors.append(f'"base_model" with value "{model}" is not a valid model id: no such model on the Hub')
    strings("tags", allow_str=False)
    if "license" in meta and meta["license"] not in LICENSES:
        errors.append(f'"license" must be one of the Hub\'s license identifiers, got {meta["license"]!r}')
    if "pipeline_tag" in meta and meta["pipeline_tag"] not in PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" must be a known task, got {meta["pipeline_tag"]!r}')
    if "model-index" in meta:
        before = len(errors)
        errors += _model_index_errors(meta["model-index"])
        if len(errors) == before:
            try:
                model_index_to_eval_results(meta["model-index"])
            except Exception as e:  # noqa: BLE001 - huggingface_hub's own parser is the last word
                errors.append(f'"model-index" cannot be parsed: {type(e).__name__}: {e}')
    return errors


def _model_index_errors(index) -> list[str]:
    if not isinstance(index, list) or not index:
        return ['"model-index" must be a non-empty list of {name, results}']
    errors = []
    for i, entry in enumerate(index):
        at = f"model-index[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append(f'"{at}.name" is required and must be a string')
            continue
        results = entry.get("results")
        if not isinstance(results, list):
            errors.append(f'"{at}.results" must be a list')
            continue
        for j, result in enumerate(results):
            rat = f"{at}.results[{j}]"
            if not isinstance(result, dict):
                errors.append(f'"{rat}" must be a mapping')
                continue
            task, dataset, metrics = result.get("task"), result.get("dataset"), result.get("metrics")
            if not isinstance(task, dict) or not isinstance(task.get("type"), str):
                errors.append(f'"{rat}.task.type" is required and must be a string')
            if not isinstance(dataset, dict) or not all(isinstance(dataset.get(k), str) for k in ("type", "name")):
                errors.append(f'"{rat}.dataset" must have string "type" and "name"')
            if not isinstance(metrics, list) or not metrics:
                errors.append(f'"{rat}.metrics" must be a non-empty list')
                continue
            for k, metric in enumerate(metrics):
                mat = f"{rat}.metrics[{k}]"
                if not isinstance(metric, dict) or not isinstance(metric.get("type"), str):
                    errors.append(f'"{mat}.type" is required and must be a string')
                elif not _is_number(metric.get("value")):
                    errors.append(f'"{mat}.value" must be a number, got {metric.get("value")!r}')
    return errors


# --- state -----------------------------------------------------------------------------------------------------------

@dataclass
class Commit:
    oid: str
    title: str
    description: str
    files: dict  # path -> bytes (the whole tree after this commit, LFS files with their real content)
    date: float = field(default_factory=time.time)
    lfs: dict = field(default_factory=dict)  # path -> sha256, for the files of `files` stored through LFS


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list = field(default_factory=list)
    lfs_objects: set = field(default_factory=set)  # sha256 of the LFS objects uploaded to this repo

    @property
    def head(self) -> Commit:
        return self.commits[-1]


class Hub:
    def __init__(self, token: Optional[str] = None, known_models=KNOWN_MODELS):
        self.token = token  # writes need "Authorization: Bearer <token>"
        self.default_known_models = frozenset(known_models)
        self.known_models: set[str] = set(known_models)  # base_model values accepted besides repos on this Hub
        self.repos: dict[str, Repo] = {}
        self.objects: dict[str, bytes] = {}  # LFS storage by sha256 (what the CDN serves)
        self.tickets: dict[str, tuple[str, str, int]] = {}  # upload ticket -> (repo_id, oid, size)
        self.requests: list[tuple[str, str, dict]] = []
        self.cdn_requests: list[tuple[str, str, dict]] = []
        self.rejections: list[tuple[str, str, list]] = []  # (route, repo or "", messages) of refused cards/commits
        self.faults: dict[str, int] = {}  # route -> remaining failures (-1: forever)
        self.echoes: dict[str, int] = {}  # route -> the status it answers, quoting the request's Authorization
        self.lock = threading.Lock()
        self.server: Optional[ThreadingHTTPServer] = None
        self.cdn: Optional[ThreadingHTTPServer] = None

    # -- test controls ---------------------------------------------------------------------------------------
    def fail(self, route: str, times: int = -1) -> None:
        self.faults[route] = times

    def heal(self) -> None:
        self.faults.clear()
        self.echoes.clear()

    def echo_authorization(self, route: str, status: int = 401) -> None:
        """Answer `route` with `status` and an error that quotes the request's Authorization header (in its first
        line, which the client also gets as X-Error-Message, and in its details), as a misconfigured mirror or proxy
        does; until reset or heal."""
        self.echoes[route] = status

    def reset(self) -> None:
        with self.lock:
            self.repos.clear()
            self.objects.clear()
            self.tickets.clear()
            self.requests.clear()
            self.cdn_requests.clear()
            self.rejections.clear()
            self.faults.clear()
            self.echoes.clear()
            self.known_models = set(self.default_known_models)

    def create_repo(self, repo_id: str, private: bool) -> Repo:
        """A repo made by someone else beforehand (e.g. public on the Hub), with only the initial commit."""
        repo = Repo(repo_id, private)
        repo.commits.append(Commit(git_sha1(repo_id.encode()), "initial commit", "",
                                   {".gitattributes": GITATTRIBUTES}))
        with self.lock:
            self.repos[repo_id] = repo
        return repo

    def lfs_paths(self, repo_id: str) -> set:
        """The paths of the repo's head commit that were stored through LFS."""
        return set(self.repos[repo_id].head.lfs)

    def start(self, port: int = 0) -> str:
        handler = type("Handler", (_Handler,), {"hub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), type("CdnHandler", (_CdnHandler,), {"hub": self}))
        self.cdn.daemon_threads = True
        for server in (self.server, self.cdn):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        for server in (self.server, self.cdn):
            if server is not None:
                server.shutdown()
                server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self.cdn.server_address[1]}"

    def is_known_model(self, model_id: str) -> bool:
        return model_id in self.known_models or model_id in self.repos

    def _should_fail(self, route: str) -> bool:
        with self.lock:
            left = self.faults.get(route, 0)
            if left == 0:
                return False
            if left > 0:
                self.faults[route] = left - 1
            return True


REPO = r"(?P<repo>[^/]+/[^/]+?|[^/]+?)"
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
    ("POST", re.compile(rf"^/{REPO}\.git/info/lfs/objects/batch$"), "lfs_batch"),
    ("POST", re.compile(rf"^/{REPO}\.git/info/lfs/objects/verify$"), "lfs_verify"),
    ("PUT", re.compile(r"^/lfs-upload/(?P<ticket>[0-9a-f]+)$"), "lfs_upload"),
    ("GET", re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
    ("HEAD", re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
]


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, sent with Content-Length or chunked (a streamed file upload)."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class _Base(BaseHTTPRequestHandler):
    hub: Hub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

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

    def _json(self, status: int, data, error_code: Optional[str] = None, head: bool = False,
              content_type: str = "application/json") -> None:
        headers = {}
        if error_code:
            headers["X-Error-Code"] = error_code
        if isinstance(data, dict) and status >= 400 and data.get("error"):
            headers["X-Error-Message"] = data["error"].splitlines()[0][:200].encode("ascii", "replace").decode()
        self._send(status, json.dumps(data).encode(), content_type, headers, head)


class _CdnHandler(_Base):
    """The storage behind LFS downloads: another origin than the Hub, like the Hub's CDN."""

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        url = urlparse(self.path)
        self.hub.cdn_requests.append((self.command, url.path, {k.lower(): v for k, v in self.headers.items()}))
        oid = url.path.rsplit("/", 1)[-1]
        content = self.hub.objects.get(oid)
        if content is None:
            return self._send(404, b"NoSuchKey", "text/plain", head=head)
        self._send(200, content, "application/octet-stream", {"ETag": f'"{oid}"', "Accept-Ranges": "none"}, head)


class _Handler(_Base):
    # -- plumbing ----------------------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        path = unquote(url.path)
        body = _read_body(self)
        self.hub.requests.append((method, path, {k.lower(): v for k, v in self.headers.items()}))
        for m, pattern, name in ROUTES:
            match = pattern.match(path)
            if m == method and match:
                if name in self.hub.echoes:
                    sent = self.headers.get("Authorization")
                    return self._json(self.hub.echoes[name], {"error": f"Rejected by the mirror: Authorization: {sent}"
                                                                       f"\n- header was: {sent}"},
                                      head=method == "HEAD")
                if self.hub._should_fail(name):
                    return self._json(500, {"error": "Internal Error (injected)"}, head=method == "HEAD")
                return getattr(self, "do_" + name)(match.groupdict(), body, parse_qs(url.query), method)
        self._json(404, {"error": f"no route {method} {path}"}, error_code="EntryNotFound", head=method == "HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _authorized(self) -> bool:
        if self.hub.token is None:
            return True
        return self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _unauthorized(self) -> None:
        self._json(401, {"error": "Invalid credentials in Authorization header"})

    def _repo(self, repo_id: str, head: bool = False) -> Optional[Repo]:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            self._json(404, {"error": "Repository not found"}, error_code="RepoNotFound", head=head)
            return None
        return repo

    def _writable_repo(self, repo_id: str) -> Optional[Repo]:
        """The repo a write request names, or None once the 401/404 answer is sent."""
        if not self._authorized():
            self._unauthorized()
            return None
        return self._repo(repo_id)

    def _commit(self, repo: Repo, rev: str, head: bool = False) -> Optional[Commit]:
        rev = unquote(rev)
        if rev == "main":
            return repo.head
        for c in repo.commits:
            if c.oid == rev:
                return c
        self._json(404, {"error": f"Invalid rev id: {rev}"}, error_code="RevisionNotFound", head=head)
        return None

    def _refuse_card(self, route: str, repo_id: str, content: str) -> bool:
        """Answers 400 (as the Hub does) and returns True when README.md's metadata would be refused."""
        errors = card_errors(content, self.hub.is_known_model)
        if not errors:
            return False
        self.hub.rejections.append((route, repo_id, errors))
        self._json(400, {"error": "Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors),
                         "errors": [{"message": e} for e in errors], "warnings": []})
        return True

    # -- routes ------------------------------------------------------------------------------------------------
    def do_create(self, groups, body, query, method):
        if not self._authorized():
            return self._unauthorized()
        data = json.loads(body or b"{}")
        repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
        url = f"{self.hub.url}/{repo_id}"
        with self.hub.lock:
            if repo_id in self.hub.repos:
                return self._json(409, {"error": "You already created this model repo", "url": url})
            private = data.get("visibility", "private" if data.get("private") else "public") != "public"
            repo = Repo(repo_id, private)
            initial = Commit(git_sha1(repo_id.encode() + str(time.time()).encode()), "initial commit", "",
                             {".gitattributes": GITATTRIBUTES})
            repo.commits.append(initial)
            self.hub.repos[repo_id] = repo
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def do_delete(self, groups, body, query, method):
        if not self._authorized():
            return self._unauthorized()
        data = json.loads(body or b"{}")
        repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
        self.hub.repos.pop(repo_id, None)
        self._json(200, {})

    def do_validate_yaml(self, groups, body, query, method):
        data = json.loads(body or b"{}")
        if not self._refuse_card("validate_yaml", "", data.get("content") or ""):
            self._json(200, {"errors": [], "warnings": []})

    def do_whoami(self, groups, body, query, method):
        if self.hub.token is None or not self._authorized():
            return self._unauthorized()
        self._json(200, {"type": "user", "name": "tester", "fullname": "Test User", "orgs": [{"name": "acme"}],
                         "auth": {"type": "access_token", "accessToken": {"role": "write"}}})

    def do_preupload(self, groups, body, query, method):
        repo = self._writable_repo(groups["repo"])
        if repo is None:
            return
        head = repo.head
        answer = []
        for f in json.loads(body)["files"]:
            path = f["path"]
            lfs = is_lfs(path, int(f.get("size") or 0), base64.b64decode(f.get("sample") or ""))
            oid = None  # the oid of the file already there, compared by the client to skip unchanged files
            if path in head.files:
                oid = head.lfs[path] if path in head.lfs else git_sha1(head.files[path])
            answer.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                           "oid": oid})
        self._json(200, {"files": answer, "commitOid": head.oid})

    def do_lfs_batch(self, groups, body, query, method):
        repo = self._writable_repo(groups["repo"])
        if repo is None:
            return
        data = json.loads(body or b"{}")
        if data.get("operation") != "upload":
            return self._json(422, {"message": f"operation {data.get('operation')!r} is not supported here"},
                              content_type="application/vnd.git-lfs+json")
        objects = []
        for obj in data.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid)) or not isinstance(size, int):
                objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "invalid oid or size"}})
                continue
            if oid in repo.lfs_objects:
                objects.append({"oid": oid, "size": size})  # already there: no actions, nothing to upload
                continue
            ticket = secrets.token_hex(16)
            with self.hub.lock:
                self.hub.tickets[ticket] = (repo.repo_id, oid, size)
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": f"{self.hub.url}/lfs-upload/{ticket}"},
                "verify": {"href": f"{self.hub.url}/{repo.repo_id}.git/info/lfs/objects/verify"},
            }})
        self._json(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                   content_type="application/vnd.git-lfs+json")

    def do_lfs_upload(self, groups, body, query, method):
        # a pre-signed URL: the ticket authorises it, the client sends no token (as with S3 on the Hub)
        with self.hub.lock:
            ticket = self.hub.tickets.pop(groups["ticket"], None)
        if ticket is None:
            return self._send(403, b"AccessDenied: unknown or used upload ticket", "text/plain")
        repo_id, oid, size = ticket
        if len(body) != size or hashlib.sha256(body).hexdigest() != oid:
            return self._send(400, b"BadDigest: content does not match the announced sha256/size", "text/plain")
        with self.hub.lock:
            self.hub.objects[oid] = body
            if repo_id in self.hub.repos:
                self.hub.repos[repo_id].lfs_objects.add(oid)
        self._send(200, b"", "text/plain", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def do_lfs_verify(self, groups, body, query, method):
        repo = self._writable_repo(groups["repo"])
        if repo is None:
            return
        data = json.loads(body or b"{}")
        oid = data.get("oid")
        if oid not in repo.lfs_objects or len(self.hub.objects.get(oid, b"")) != data.get("size"):
            return self._json(404, {"message": f"object {oid} was not uploaded"},
                              content_type="application/vnd.git-lfs+json")
        self._json(200, {"success": True})

    def do_commit(self, groups, body, query, method):
        repo = self._writable_repo(groups["repo"])
        if repo is None:
            return
        header, files, lfs, deleted = {}, {}, {}, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            v = item["value"]
            if item["key"] == "header":
                header = v
            elif item["key"] == "file":
                files[v["path"]] = base64.b64decode(v["content"]) if v.get("encoding") == "base64" else \
                    v["content"].encode()
            elif item["key"] == "lfsFile":
                oid = v.get("oid")
                content = self.hub.objects.get(oid) if oid in repo.lfs_objects else None
                if content is None or ("size" in v and v["size"] != len(content)):
                    self.hub.rejections.append(("commit", repo.repo_id, [f"missing LFS object {oid}"]))
                    return self._json(400, {"error": "Your push was rejected because an LFS pointer pointed to a "
                                                     f"file that does not exist: {v['path']} (oid sha256:{oid})"})
                files[v["path"]] = content
                lfs[v["path"]] = oid
            elif item["key"] == "deletedFile":
                deleted.append(v["path"])
            else:
                return self._json(400, {"error": f"unsupported commit item {item['key']}"})
        if "README.md" in files and self._refuse_card("commit", repo.repo_id,
                                                       files["README.md"].decode("utf-8", "replace")):
            return
        with self.hub.lock:
            head = repo.head
            tree, tree_lfs = dict(head.files), dict(head.lfs)
            for p, content in files.items():
                tree[p] = content
                tree_lfs.pop(p, None)
            tree_lfs.update(lfs)
            for p in deleted:
                tree.pop(p, None)
                tree_lfs.pop(p, None)
            oid = hashlib.sha1(json.dumps([head.oid, sorted((p, git_sha1(c)) for p, c in tree.items()),
                                           time.time()]).encode()).hexdigest()
            repo.commits.append(Commit(oid, header.get("summary", ""), header.get("description", ""), tree,
                                       lfs=tree_lfs))
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

    @staticmethod
    def _entry(commit: Commit, path: str) -> dict:
        content = commit.files[path]
        if path in commit.lfs:
            pointer = lfs_pointer(commit.lfs[path], len(content))
            return {"type": "file", "oid": git_sha1(pointer), "size": len(content), "path": path,
                    "lfs": {"oid": commit.lfs[path], "size": len(content), "pointerSize": len(pointer)}}
        return {"type": "file", "oid": git_sha1(content), "size": len(content), "path": path}

    def do_tree(self, groups, body, query, method):
        repo = self._repo(groups["repo"])
        if repo is None:
            return
        commit = self._commit(repo, groups["rev"])
        if commit is None:
            return
        prefix = (groups.get("path") or "").strip("/")
        self._json(200, [self._entry(commit, p) for p in sorted(commit.files)
                         if not prefix or p.startswith(prefix + "/")])

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
        path = groups["path"]
        content = commit.files.get(path)
        if content is None:
            return self._json(404, {"error": "Entry not found"}, error_code="EntryNotFound", head=head)
        if path in commit.lfs:
            # like the Hub: a redirect to the CDN; the file's sha256 and size travel in X-Linked-* headers
            oid = commit.lfs[path]
            return self._send(302, b"Found. Redirecting", "text/plain; charset=utf-8",
                              {"Location": f"{self.hub.cdn_url}/lfs/{oid}", "X-Repo-Commit": commit.oid,
                               "ETag": f'"{git_sha1(lfs_pointer(oid, len(content)))}"',
                               "X-Linked-Etag": f'"{oid}"', "X-Linked-Size": str(len(content))}, head=head)
        self._send(200, content, "application/octet-stream",
                   {"X-Repo-Commit": commit.oid, "ETag": f'"{git_sha1(content)}"'}, head=head)
