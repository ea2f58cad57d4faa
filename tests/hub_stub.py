"""A local, loopback-only stand-in for the Hugging Face Hub HTTP API, for tests.

The REAL ``huggingface_hub`` client (and ``transformers``' ``push_to_hub`` / ``from_pretrained`` on top of it)
talks to a ``ThreadingHTTPServer`` bound to ``127.0.0.1`` on a free port. Repos live in a temporary
directory (content-addressed blobs) plus an in-memory git-like history: every branch points at its own
commit, every commit holds a full file tree, so branches are fully separate.

Usage in a test::

    from hub_stub import local_hub  # noqa: F401  (pytest finds the fixture by name)
    # or, in a conftest.py: pytest_plugins = ["hub_stub"]

    def test_push(local_hub):
        api = HfApi()                                  # or HfApi(endpoint=local_hub.endpoint)
        api.create_repo("me/tiny", exist_ok=True)
        model.push_to_hub("me/tiny", revision="round-1")
        ...
        assert local_hub.unhandled == []               # every request was understood

Outside pytest, ``with hub_server() as endpoint:`` starts/stops the bare server (no patching) and
``with patched_hub_env(endpoint, cache_dir):`` points the already-imported client libraries at it.

Implemented endpoints (``{type}`` is ``models`` / ``datasets`` / ``spaces``; URL prefix for files is ``""`` /
``datasets/`` / ``spaces/``)::

    POST   /api/repos/create                          create_repo (409 + url when it exists)
    POST   /api/repos/delete                          delete_repo
    GET    /api/whoami-v2                             whoami (user "stub-user")
    POST   /api/validate-yaml                         README metadata check (always valid)
    GET    /api/{type}/{repo_id}[/revision/{rev}]     model_info / dataset_info / repo_info (sha, siblings)
    GET    /api/{type}/{repo_id}/refs                 list_repo_refs
    POST   /api/{type}/{repo_id}/branch/{branch}      create_branch (startingPoint; 409 when it exists)
    DELETE /api/{type}/{repo_id}/branch/{branch}      delete_branch
    POST   /api/{type}/{repo_id}/tag/{rev}            create_tag   DELETE .../tag/{tag}: delete_tag
    GET    /api/{type}/{repo_id}/tree/{rev}[/{path}]  list_repo_tree / list_repo_files (recursive or not)
    POST   /api/{type}/{repo_id}/paths-info/{rev}     get_paths_info
    GET    /api/{type}/{repo_id}/commits/{rev}        list_repo_commits
    POST   /api/{type}/{repo_id}/preupload/{rev}      answers uploadMode "regular" for every file
    POST   /api/{type}/{repo_id}/commit/{rev}         NDJSON commit: header, file (base64), deletedFile, deletedFolder
    HEAD   /{prefix}{repo_id}/resolve/{rev}/{path}    ETag (git blob sha1), X-Repo-Commit, Content-Length
    GET    /{prefix}{repo_id}/resolve/{rev}/{path}    file bytes (Range supported)

LFS and Xet are not implemented: the preupload answer makes the client send every file inline, and
``HF_HUB_DISABLE_XET`` must be on (the fixture does it) because ``upload_folder`` otherwise takes the
Xet pipeline. Anything else answers 404 ``{"error": ...}`` and is recorded in ``HubStub.unhandled``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


DEFAULT_USER = "stub-user"
_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_ACTIONS = {"revision", "refs", "branch", "tag", "tree", "paths-info", "commits", "preupload", "commit"}
_GITATTRIBUTES = b"""*.bin filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
"""
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1 of `data`: what the Hub uses as ETag / oid of a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, body=None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body = body


@dataclass
class _Commit:
    oid: str
    parent: str | None
    files: dict[str, tuple[str, int]]  # path -> (git blob oid, size); blob bytes on disk by oid
    title: str
    message: str
    date: str


@dataclass
class _Repo:
    repo_id: str
    repo_type: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, _Commit] = field(default_factory=dict)


class HubStub:
    """The state of the fake Hub (repos, blobs) and its HTTP server. Thread-safe."""

    def __init__(self, root: str | None = None, host: str = "127.0.0.1", port: int = 0):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"The hub stub only binds to loopback addresses, not {host!r}.")
        self._own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="hub_stub_")
        self.blob_dir = os.path.join(self.root, "blobs")
        os.makedirs(self.blob_dir, exist_ok=True)
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.unhandled: list[tuple[str, str]] = []  # requests the stub did not understand
        self.errors: list[str] = []  # server-side exceptions (bugs in the stub)
        self.blocked: list = []  # non-loopback attempts, filled by the `local_hub` fixture
        self.lock = threading.RLock()
        self._counter = 0
        stub = self

        class Handler(_Handler):
            hub = stub

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.host, self.port = self.server.server_address[:2]
        self.endpoint = f"http://{self.host}:{self.port}"
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "HubStub":
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-stub", daemon=True
        )
        self._thread.start()
        return self

    def __enter__(self) -> "HubStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ storage
    def _put_blob(self, data: bytes) -> tuple[str, int]:
        oid = git_blob_oid(data)
        path = os.path.join(self.blob_dir, oid)
        if not os.path.exists(path):
            tmp = f"{path}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return oid, len(data)

    def blob_path(self, oid: str) -> str:
        return os.path.join(self.blob_dir, oid)

    def read_blob(self, oid: str) -> bytes:
        with open(self.blob_path(oid), "rb") as f:
            return f.read()

    def _new_commit(self, repo: _Repo, parent: str | None, files: dict, title: str, message: str = "") -> _Commit:
        self._counter += 1
        payload = json.dumps(
            [repo.repo_type, repo.repo_id, parent, sorted(files.items()), title, message, self._counter, os.urandom(8).hex()]
        )
        oid = hashlib.sha1(payload.encode()).hexdigest()
        commit = _Commit(oid=oid, parent=parent, files=dict(files), title=title, message=message, date=_now())
        repo.commits[oid] = commit
        return commit

    # ------------------------------------------------------------------ repos
    def get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository Not Found for url: {repo_type} {repo_id}.", "RepoNotFound")
        return repo

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> tuple[_Repo, bool]:
        with self.lock:
            key = (repo_type, repo_id)
            if key in self.repos:
                return self.repos[key], False
            repo = _Repo(repo_id=repo_id, repo_type=repo_type, private=private, created_at=_now())
            oid, size = self._put_blob(_GITATTRIBUTES)
            commit = self._new_commit(repo, None, {".gitattributes": (oid, size)}, "initial commit")
            repo.branches["main"] = commit.oid
            self.repos[key] = repo
            return repo, True

    def resolve(self, repo: _Repo, revision: str) -> _Commit:
        """Branch, tag, full commit sha (or `refs/heads/x`, `refs/tags/x`) -> commit."""
        rev = unquote(revision)
        for prefix, table in (("refs/heads/", repo.branches), ("refs/tags/", repo.tags)):
            if rev.startswith(prefix) and rev[len(prefix) :] in table:
                return repo.commits[table[rev[len(prefix) :]]]
        if rev in repo.branches:
            return repo.commits[repo.branches[rev]]
        if rev in repo.tags:
            return repo.commits[repo.tags[rev]]
        if rev in repo.commits:
            return repo.commits[rev]
        if len(rev) >= 7 and re.fullmatch(r"[0-9a-f]+", rev):
            matches = [c for oid, c in repo.commits.items() if oid.startswith(rev)]
            if len(matches) == 1:
                return matches[0]
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def branch_name(self, repo: _Repo, revision: str) -> str:
        rev = unquote(revision)
        if rev.startswith("refs/heads/"):
            rev = rev[len("refs/heads/") :]
        if rev not in repo.branches:
            if rev in repo.commits or rev in repo.tags or rev.startswith("refs/"):
                raise HubError(400, f"Can only commit to a branch, not to {rev!r}.", "InvalidRevision")
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return rev

    def url_for(self, repo: _Repo) -> str:
        return f"{self.endpoint}/{_TYPE_PREFIX[repo.repo_type]}{repo.repo_id}"

    # ------------------------------------------------------------------ tree helpers
    @staticmethod
    def tree_entries(commit: _Commit, path: str = "", recursive: bool = False) -> list[dict]:
        path = path.strip("/")
        prefix = f"{path}/" if path else ""
        files = {p: v for p, v in commit.files.items() if p.startswith(prefix)}
        if path and path in commit.files:  # a file, not a folder
            oid, size = commit.files[path]
            return [{"type": "file", "oid": oid, "size": size, "path": path}]
        if path and not files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        out_files, folders = [], set()
        for p, (oid, size) in sorted(files.items()):
            rel = p[len(prefix) :]
            parts = rel.split("/")
            for i in range(1, len(parts)):
                folder = prefix + "/".join(parts[:i])
                if recursive or i == 1:
                    folders.add(folder)
            if recursive or len(parts) == 1:
                out_files.append({"type": "file", "oid": oid, "size": size, "path": p})
        out_folders = [
            {"type": "directory", "oid": hashlib.sha1(f"{commit.oid}:{f}".encode()).hexdigest(), "size": 0, "path": f}
            for f in sorted(folders)
        ]
        return out_folders + out_files


class _Handler(BaseHTTPRequestHandler):
    hub: HubStub
    protocol_version = "HTTP/1.1"
    server_version = "HubStub/1.0"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if not (headers and "Content-Length" in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _dispatch(self):
        method = self.command
        raw = self.path
        split = urlsplit(raw)
        path, query = split.path, parse_qs(split.query)
        hub = self.hub
        with hub.lock:
            hub.requests.append((method, path))
        body = self._body() if method in ("POST", "PUT", "DELETE") else b""
        try:
            handled = self._route(method, path, query, body)
            if handled is False:
                with hub.lock:
                    hub.unhandled.append((method, raw))
                self._json(404, {"error": f"HubStub: no route for {method} {path}"})
        except HubError as e:
            headers = dict(e.headers)
            if e.code:
                headers["X-Error-Code"] = e.code
            headers["X-Error-Message"] = e.message
            self._json(e.status, e.body if e.body is not None else {"error": e.message}, headers)
        except Exception as e:  # a bug in the stub: make it visible
            import traceback

            with hub.lock:
                hub.errors.append(traceback.format_exc())
            self._json(500, {"error": f"HubStub internal error: {e!r}"})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # ------------------------------------------------------------------ routing
    def _split_repo(self, segments: list[str], repo_type: str) -> tuple[str, list[str]]:
        """`user/name/action/...` or `name/action/...` (legacy ids without namespace)."""
        if len(segments) >= 2 and segments[1] in _ACTIONS:
            two = "/".join(segments[:2])
            if (repo_type, two) not in self.hub.repos:
                return segments[0], segments[1:]
        if len(segments) >= 2:
            return "/".join(segments[:2]), segments[2:]
        return segments[0], []

    def _route(self, method, path, query, body):
        hub = self.hub
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo(json.loads(body or b"{}"))
        if path == "/api/repos/delete" and method in ("DELETE", "POST"):
            return self._delete_repo(json.loads(body or b"{}"))
        if path == "/api/whoami-v2" and method == "GET":
            token = {"displayName": "stub", "role": "write"}
            return self._json(200, {"type": "user", "name": DEFAULT_USER, "fullname": "Hub Stub", "orgs": [],
                                    "auth": {"type": "access_token", "accessToken": token}})
        if path == "/api/validate-yaml" and method == "POST":
            return self._json(200, {"errors": [], "warnings": []})

        m = re.match(r"^/api/(models|datasets|spaces)/(.+)$", path)
        if m:
            repo_type = _API_TYPES[m.group(1)]
            segments = m.group(2).split("/")
            repo_id, rest = self._split_repo(segments, repo_type)
            with hub.lock:
                repo = hub.get_repo(repo_type, repo_id)
                return self._repo_api(method, repo, rest, query, body)

        m = re.match(r"^/(?:(datasets|spaces)/)?(.+?)/resolve/([^/]+)/(.+)$", path)
        if m and method in ("GET", "HEAD"):
            repo_type = {"datasets": "dataset", "spaces": "space"}.get(m.group(1) or "", "model")
            with hub.lock:
                repo = hub.get_repo(repo_type, unquote(m.group(2)))
                commit = hub.resolve(repo, m.group(3))
                filename = unquote(m.group(4))
                entry = commit.files.get(filename)
                if entry is None:
                    raise HubError(404, f"Entry not found: {filename}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
            return self._serve_file(commit, entry)
        return False

    def _create_repo(self, payload):
        hub = self.hub
        name, org = payload.get("name"), payload.get("organization")
        if not name:
            raise HubError(400, "Missing repo name")
        repo_id = f"{org or DEFAULT_USER}/{name}"
        repo_type = payload.get("type") or "model"
        private = bool(payload.get("private", False)) or payload.get("visibility") == "private"
        repo, created = hub.create_repo(repo_type, repo_id, private=private)
        if not created:
            message = "You already created this repo"  # the client reads "url" from the 409 body
            raise HubError(409, message, body={"error": message, "url": hub.url_for(repo)})
        return self._json(200, {"url": hub.url_for(repo), "name": repo_id, "id": repo_id})

    def _delete_repo(self, payload):
        hub = self.hub
        repo_id = f"{payload.get('organization') or DEFAULT_USER}/{payload.get('name')}"
        key = (payload.get("type") or "model", repo_id)
        with hub.lock:
            if key not in hub.repos:
                raise HubError(404, "Repository Not Found", "RepoNotFound")
            del hub.repos[key]
        return self._send(200, b"")

    def _repo_api(self, method, repo, rest, query, body):
        hub = self.hub
        action = rest[0] if rest else None
        args = [unquote(s) for s in rest[1:]]

        if method == "GET" and action in (None, "revision"):
            commit = hub.resolve(repo, args[0] if args else "main")
            return self._json(200, self._repo_info(repo, commit))

        if method == "GET" and action == "refs":
            def ref(kind, name, oid):
                return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}

            return self._json(200, {
                "branches": [ref("heads", n, o) for n, o in sorted(repo.branches.items())],
                "tags": [ref("tags", n, o) for n, o in sorted(repo.tags.items())],
                "converts": [],
                "pullRequests": [],
            })

        if action == "branch" and args:
            branch = "/".join(args)
            if method == "POST":
                payload = json.loads(body or b"{}")
                if branch in repo.branches:
                    raise HubError(409, f"Branch {branch} already exists")
                start = hub.resolve(repo, payload.get("startingPoint") or "main")
                if payload.get("emptyBranch"):
                    start = hub._new_commit(repo, None, {}, f"create empty branch {branch}")
                repo.branches[branch] = start.oid
                return self._send(200, b"")
            if method == "DELETE":
                if branch not in repo.branches:
                    raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
                if branch == "main":
                    raise HubError(403, "Cannot delete the default branch")
                del repo.branches[branch]
                return self._send(200, b"")

        if action == "tag" and args:
            if method == "POST":
                payload = json.loads(body or b"{}")
                tag = payload.get("tag")
                if tag in repo.tags:
                    raise HubError(409, f"Tag {tag} already exists")
                repo.tags[tag] = hub.resolve(repo, args[0]).oid
                return self._send(200, b"")
            if method == "DELETE":
                if args[0] not in repo.tags:
                    raise HubError(404, f"Invalid rev id: {args[0]}", "RevisionNotFound")
                del repo.tags[args[0]]
                return self._send(200, b"")

        if method == "GET" and action == "tree" and args:
            commit = hub.resolve(repo, args[0])
            recursive = (query.get("recursive", ["false"])[0]).lower() in ("1", "true")
            return self._json(200, hub.tree_entries(commit, "/".join(args[1:]), recursive=recursive))

        if method == "POST" and action == "paths-info" and args:
            commit = hub.resolve(repo, args[0])
            form = parse_qs(body.decode()) if body else {}
            if not form and body:
                form = json.loads(body)
            out = []
            for p in form.get("paths", []):
                p = p.strip("/")
                if p in commit.files:
                    oid, size = commit.files[p]
                    out.append({"type": "file", "oid": oid, "size": size, "path": p})
                elif any(f.startswith(p + "/") for f in commit.files):
                    folder_oid = hashlib.sha1(f"{commit.oid}:{p}".encode()).hexdigest()
                    out.append({"type": "directory", "oid": folder_oid, "size": 0, "path": p})
            return self._json(200, out)

        if method == "GET" and action == "commits" and args:
            commit, out = hub.resolve(repo, args[0]), []
            while commit is not None:
                out.append({"id": commit.oid, "title": commit.title, "message": commit.message,
                            "authors": [{"user": DEFAULT_USER}], "date": commit.date})
                commit = repo.commits.get(commit.parent) if commit.parent else None
            return self._json(200, out)

        if method == "POST" and action == "preupload" and args:
            commit = hub.resolve(repo, hub.branch_name(repo, args[0]))
            files = json.loads(body or b"{}").get("files", [])
            return self._json(200, {"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                 "oid": commit.files[f["path"]][0] if f["path"] in commit.files else None}
                for f in files
            ]})

        if method == "POST" and action == "commit" and args:
            return self._commit(repo, args[0], body)
        return False

    def _repo_info(self, repo, commit):
        return {
            "_id": hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "createdAt": repo.created_at,
            "lastModified": commit.date,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }

    def _commit(self, repo, revision, body):
        hub = self.hub
        branch = hub.branch_name(repo, revision)
        head = repo.commits[repo.branches[branch]]
        files = dict(head.files)
        header = {}
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value", {})
            if key == "header":
                header = value
                parent = value.get("parentCommit")
                if parent and parent != head.oid:
                    raise HubError(412, f"parentCommit {parent} is not the head of {branch} ({head.oid})")
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                files[value["path"].lstrip("/")] = hub._put_blob(base64.b64decode(value["content"]))
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: v for p, v in files.items() if not p.startswith(prefix)}
            elif key == "lfsFile":
                raise HubError(400, "HubStub does not implement LFS: preupload answers 'regular' for every file.")
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        commit = hub._new_commit(repo, head.oid, files, header.get("summary", ""), header.get("description", ""))
        repo.branches[branch] = commit.oid
        return self._json(200, {
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{hub.url_for(repo)}/commit/{commit.oid}",
            "commitMessage": commit.title,
            "hookOutput": "",
            "pullRequestUrl": None,
        })

    def _serve_file(self, commit, entry):
        oid, size = entry
        headers = {
            "ETag": f'"{oid}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
            "Content-Disposition": "attachment",
        }
        start, end = 0, size - 1
        status = 200
        rng = self.headers.get("Range")
        m = re.match(r"^bytes=(\d*)-(\d*)$", rng or "")
        if m and size > 0 and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else size - 1
            else:
                start = max(0, size - int(m.group(2)))
            end = min(end, size - 1)
            if start > end:
                headers["Content-Range"] = f"bytes */{size}"
                return self._send(416, b"", headers, content_type="application/octet-stream")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        headers["Content-Length"] = length
        if self.command == "HEAD":
            return self._send(status, b"", headers, content_type="application/octet-stream")
        with open(self.hub.blob_path(oid), "rb") as f:
            f.seek(start)
            data = f.read(length)
        return self._send(status, data, headers, content_type="application/octet-stream")


# ---------------------------------------------------------------------- entry points
@contextlib.contextmanager
def hub_server(root: str | None = None):
    """Start a fresh stub on 127.0.0.1:<free port>; yield its endpoint URL (``http://127.0.0.1:PORT``).

    Only the server: client libraries are NOT re-pointed (see `patched_hub_env` / the `local_hub` fixture).
    Use `HubStub` as a context manager instead when the test needs the stub object itself.
    """
    with HubStub(root=root) as stub:
        yield stub.endpoint


def _is_loopback_host(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]")
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _loopback_only(blocked: list):
    """Make any non-loopback connect / DNS lookup in this process raise (a guard for the test's duration).

    Each blocked attempt is also appended to `blocked`, so swallowed errors (telemetry, best-effort
    look-ups) still show up.
    """
    orig_connect, orig_connect_ex = socket.socket.connect, socket.socket.connect_ex
    orig_getaddrinfo = socket.getaddrinfo

    def _check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback_host(address[0]):
            blocked.append(("connect", address))
            raise ConnectionRefusedError(f"hub_stub: non-loopback connection to {address!r} blocked during the test")

    def connect(sock, address):
        _check(sock, address)
        return orig_connect(sock, address)

    def connect_ex(sock, address):
        _check(sock, address)
        return orig_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback_host(host):
            blocked.append(("getaddrinfo", host))
            raise socket.gaierror(f"hub_stub: DNS lookup of {host!r} blocked during the test")
        return orig_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = orig_connect, orig_connect_ex
        socket.getaddrinfo = orig_getaddrinfo


@contextlib.contextmanager
def patched_hub_env(endpoint: str, cache_dir: str, block_network: bool = True):
    """Point huggingface_hub / transformers / datasets / evaluate (already imported or not) at `endpoint`.

    Sets env vars (for subprocesses and for code that reads them late) AND patches the module-level
    values those libraries captured at import time:

    - ``HF_ENDPOINT`` -> ``huggingface_hub.constants.ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``,
      ``HF_URL_HOSTS``, the module-level ``huggingface_hub.hf_api.api.endpoint``; transformers' shared
      ``HfApi`` (``transformers.utils.hub._hf_api``) is reset so it is rebuilt with the stub endpoint;
      ``datasets.config.HF_ENDPOINT`` / ``HUB_DATASETS_URL`` and ``evaluate.config.HF_ENDPOINT`` if imported;
    - ``HF_HUB_OFFLINE`` -> ``huggingface_hub.constants.HF_HUB_OFFLINE`` = False (and datasets' copy);
    - ``HF_HUB_DISABLE_XET`` -> ``huggingface_hub.constants.HF_HUB_DISABLE_XET`` = True (no Xet pipeline);
    - ``HF_HUB_CACHE`` -> ``huggingface_hub.constants.HF_HUB_CACHE`` = `cache_dir` (a fresh download cache);
    - telemetry off; the shared httpx client is closed so it is rebuilt without proxies for 127.0.0.1.

    Everything is restored on exit. With `block_network`, any non-loopback connect/DNS lookup raises.
    Yields the list of blocked attempts (``(kind, address)``), empty when nothing tried to leave loopback.
    """
    import importlib

    hh_constants = importlib.import_module("huggingface_hub.constants")
    hh_api = importlib.import_module("huggingface_hub.hf_api")
    hh_http = importlib.import_module("huggingface_hub.utils._http")

    saved_attrs: list[tuple[object, str, object]] = []
    missing = object()

    def setattr_saved(obj, name, value):
        saved_attrs.append((obj, name, getattr(obj, name, missing)))
        setattr(obj, name, value)

    env = {
        "HF_ENDPOINT": endpoint,
        "HF_HUB_OFFLINE": None,
        "TRANSFORMERS_OFFLINE": None,
        "HF_DATASETS_OFFLINE": None,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_CACHE": cache_dir,
        "NO_PROXY": ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get("NO_PROXY")])),
        "no_proxy": ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get("no_proxy")])),
    }
    saved_env = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v

    host = urlsplit(endpoint).hostname
    setattr_saved(hh_constants, "ENDPOINT", endpoint)
    setattr_saved(hh_constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    setattr_saved(hh_constants, "HF_URL_HOSTS", frozenset(getattr(hh_constants, "HF_URL_HOSTS", frozenset())) | {host})
    setattr_saved(hh_constants, "HF_HUB_OFFLINE", False)
    setattr_saved(hh_constants, "HF_HUB_DISABLE_XET", True)
    setattr_saved(hh_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    setattr_saved(hh_constants, "HF_HUB_CACHE", cache_dir)
    setattr_saved(hh_api.api, "endpoint", endpoint)
    if "transformers.utils.hub" in sys.modules:
        setattr_saved(sys.modules["transformers.utils.hub"], "_hf_api", None)
    if "datasets.config" in sys.modules:
        dc = sys.modules["datasets.config"]
        setattr_saved(dc, "HF_ENDPOINT", endpoint)
        setattr_saved(dc, "HUB_DATASETS_URL", endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}")
        setattr_saved(dc, "HF_HUB_OFFLINE", False)
        setattr_saved(dc, "HF_DATASETS_OFFLINE", False)
    if "evaluate.config" in sys.modules:
        ec = sys.modules["evaluate.config"]
        setattr_saved(ec, "HF_ENDPOINT", endpoint)
        setattr_saved(ec, "HUB_EVALUATE_URL", endpoint + "/spaces/{path}/resolve/{revision}/{name}")
    hfs = sys.modules.get("huggingface_hub.hf_file_system")
    if hfs is not None:
        hfs.HfFileSystem.clear_instance_cache()
    hh_http.close_session()

    blocked: list = []
    guard = _loopback_only(blocked) if block_network else contextlib.nullcontext()
    try:
        with guard:
            yield blocked
    finally:
        hh_http.close_session()
        if hfs is not None:
            hfs.HfFileSystem.clear_instance_cache()
        for obj, name, value in reversed(saved_attrs):
            if value is missing:
                delattr(obj, name)
            else:
                setattr(obj, name, value)
        if "transformers.utils.hub" in sys.modules:  # drop an HfApi built during the test with the stub endpoint
            sys.modules["transformers.utils.hub"]._hf_api = None
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


try:  # the pytest fixture; the module stays importable without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:

    @pytest.fixture
    def local_hub(tmp_path):
        """A fresh stub Hub for one test, with huggingface_hub/transformers pointed at it.

        Yields the `HubStub` (``.endpoint``, ``.port``, ``.repos``, ``.requests``, ``.unhandled``,
        ``.errors``, ``.blocked``). Downloads go to a per-test cache (``tmp_path / "hf_cache"``);
        non-loopback network is blocked (attempts listed in ``.blocked``). Fails the test if the stub
        hit an internal error.
        """
        with HubStub(root=str(tmp_path / "hub_stub_storage")) as stub:
            with patched_hub_env(stub.endpoint, str(tmp_path / "hf_cache")) as blocked:
                stub.blocked = blocked
                yield stub
        assert not stub.errors, "HubStub internal errors:\n" + "\n".join(stub.errors)
