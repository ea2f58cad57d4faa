"""`local_hub`: a pytest fixture that fakes the Hugging Face Hub for the real `huggingface_hub` client.

Five `HfApi` methods (create_repo, create_branch, upload_folder, create_commit, whoami) are replaced, on the class,
by `FakeHub` methods; `autospec` keeps the real signatures, so a call with a wrong argument still fails. Everything
else is the real library: our code and transformers' `push_to_hub` build their own `HfApi`, `upload_folder` applies
allow/ignore/delete patterns with `huggingface_hub.utils.filter_repo_objects` exactly as the real one does, and
loading goes through real `hf_hub_download` in offline mode.

Storage is a Hub *cache* (the documented layout ``models--{org}--{name}/refs/{branch}`` holding a commit sha, and
``snapshots/{sha}/`` holding that commit's files; ``datasets--{org}--{name}`` for ``repo_type="dataset"``), and
`huggingface_hub.constants.HF_HUB_CACHE` points at it. So ``from_pretrained(repo_id, revision="round-1")``,
``pipeline(model=repo_id)``, ``ModelCard.load(repo_id)`` and ``snapshot_download(repo_id, repo_type="dataset")`` read
what was pushed, and each branch is also a plain folder (``local_hub.path(repo_id, branch)``).

The fixture also turns offline mode on and makes any non-loopback connect or DNS lookup raise (recorded in
``local_hub.blocked``; the test fails at teardown if anything was blocked).

    # tests/conftest.py registers this module as a plugin (pytest_plugins), so tests just name the fixture:

    def test_push(local_hub):
        push_csl_outputs(out, "stub-user/tiny")
        assert local_hub.branches("stub-user/tiny") == {"main", "round-0"}
        assert local_hub.files("stub-user/tiny", "round-0") == {".gitattributes", "config.json", ...}

`installed(root)` is the same stand-in for a whole process without pytest, for a subprocess that runs ``csl-hf``
(tests/test_wheel.py): ``with hub_stub.installed(Path(root)) as hub: main(argv)``; processes given the same root
share one fake hub.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import shutil
import socket
from pathlib import Path
from unittest import mock

import pytest
from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi, RepoUrl, constants
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id

USER = "stub-user"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"  # what the Hub puts in a new repo
REPO_TYPES = {None: "models", "model": "models", "dataset": "datasets"}  # the cache's folder prefix per repo type


class FakeHub:
    """Repos as Hub-cache folders under `root`; the `HfApi` stand-ins and what tests read back."""

    user = USER

    def __init__(self, root: Path):
        self.root = Path(root)
        self.commits: list[dict] = []  # {"repo_id", "branch", "message", "added", "deleted"}, in push order
        self.blocked: list[tuple[str, object]] = []  # non-loopback connects / DNS look-ups the guard refused

    # -------------------------------------------------------------- reading back (for assertions)
    def _folder(self, repo_id: str, repo_type: str | None = None) -> Path:
        if repo_type not in REPO_TYPES:
            raise AssertionError(f"the fake hub holds model and dataset repos, not {repo_type!r} repos")
        return self.root / f"{REPO_TYPES[repo_type]}--{repo_id.replace('/', '--')}"

    def _repo(self, repo_id: str, repo_type: str | None = None) -> Path:
        repo = self._folder(repo_id, repo_type)
        if not repo.is_dir():
            raise FileNotFoundError(f"fake hub: no {repo_type or 'model'} repo {repo_id!r} (create_repo first)")
        return repo

    def branches(self, repo_id: str, repo_type: str | None = None) -> set[str]:
        return {ref.name for ref in (self._repo(repo_id, repo_type) / "refs").iterdir()}

    def sha(self, repo_id: str, branch: str = "main", repo_type: str | None = None) -> str:
        ref = self._repo(repo_id, repo_type) / "refs" / branch
        if not ref.is_file():  # like the Hub: commits go to existing branches only
            raise FileNotFoundError(f"fake hub: no branch {branch!r} in {repo_id!r} (create_branch first)")
        return ref.read_text()

    def path(self, repo_id: str, branch: str = "main", repo_type: str | None = None) -> Path:
        """The folder holding `branch` as it is now (a snapshot: load it with ``from_pretrained(path)``)."""
        return self._repo(repo_id, repo_type) / "snapshots" / self.sha(repo_id, branch, repo_type)

    def files(self, repo_id: str, branch: str = "main", repo_type: str | None = None) -> set[str]:
        root = self.path(repo_id, branch, repo_type)
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    # -------------------------------------------------------------- the HfApi methods (`api` is the HfApi instance)
    def whoami(self, api, token=None, **_):
        return {"type": "user", "name": self.user}

    def create_repo(self, api, repo_id, *, repo_type=None, exist_ok=False, **_):
        repo_id = repo_id if "/" in repo_id else f"{self.user}/{repo_id}"  # the Hub adds the caller's namespace
        validate_repo_id(repo_id)
        repo = self._folder(repo_id, repo_type)
        if repo.exists() and not exist_ok:
            raise FileExistsError(f"fake hub: {repo_id} exists")
        if not repo.exists():
            (repo / "refs").mkdir(parents=True)
            self._commit(repo_id, "main", None, "initial commit", [CommitOperationAdd(".gitattributes", GITATTRIBUTES)],
                         repo_type)
        prefix = "" if repo_type in (None, "model") else f"{repo_type}s/"
        return RepoUrl(f"{constants.ENDPOINT}/{prefix}{repo_id}")

    def create_branch(self, api, repo_id, *, branch, revision=None, repo_type=None, exist_ok=False, **_):
        refs = self._repo(repo_id, repo_type) / "refs"
        if (refs / branch).exists():
            if not exist_ok:
                raise FileExistsError(f"fake hub: branch {branch!r} exists in {repo_id}")
            return
        # As on the Hub, a new branch starts at its starting point's commit: it holds all of that branch's files.
        (refs / branch).write_text(self.sha(repo_id, revision or "main", repo_type))

    def create_commit(self, api, repo_id, operations, *, commit_message, revision=None, repo_type=None,
                      create_pr=None, **_):
        assert not create_pr, "the fake hub commits to branches only, not pull requests"
        branch = revision or "main"
        return self._commit(repo_id, branch, self.sha(repo_id, branch, repo_type), commit_message, list(operations),
                            repo_type)

    def upload_folder(self, api, *, repo_id, folder_path, path_in_repo=None, commit_message=None, revision=None,
                      allow_patterns=None, ignore_patterns=None, delete_patterns=None, repo_type=None, **_):
        """`HfApi.upload_folder` in three steps, as the real one: filter local files, list remote files matching
        `delete_patterns` (never ``.gitattributes``, never a file being re-added), one commit."""
        assert not path_in_repo, "the fake hub uploads folders to the repo root only"
        folder = Path(folder_path)
        local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        ignore = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
        ignore += DEFAULT_IGNORE_PATTERNS  # .git/ and the like, added by the real upload_folder too
        kept = filter_repo_objects(local, allow_patterns=allow_patterns, ignore_patterns=ignore)
        adds = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in kept]
        deletes = []
        if delete_patterns is not None:
            remote = sorted(self.files(repo_id, revision or "main", repo_type))
            added = {op.path_in_repo for op in adds}
            deletes = [CommitOperationDelete(path_in_repo=p)
                       for p in filter_repo_objects(remote, allow_patterns=delete_patterns)
                       if p != ".gitattributes" and p not in added]
        # through `api`, so the (patched) create_commit is what writes, as with the real client
        return api.create_commit(repo_id, deletes + adds, commit_message=commit_message or "Upload folder",
                                 revision=revision, repo_type=repo_type)

    # -------------------------------------------------------------- storage
    def _commit(self, repo_id, branch, parent, message, operations, repo_type=None) -> CommitInfo:
        repo = self._folder(repo_id, repo_type)
        sha = hashlib.sha1(f"{repo_id}@{branch}#{len(self.commits)}".encode()).hexdigest()
        tree = repo / "snapshots" / sha
        if parent is None:
            tree.mkdir(parents=True)
        else:  # a commit is the parent's files plus these operations; older snapshots stay as they were
            shutil.copytree(repo / "snapshots" / parent, tree)
        added, deleted = [], []
        for op in operations:
            target = tree / op.path_in_repo
            if isinstance(op, CommitOperationAdd):
                target.parent.mkdir(parents=True, exist_ok=True)
                with op.as_file() as f:
                    target.write_bytes(f.read())
                added.append(op.path_in_repo)
            elif isinstance(op, CommitOperationDelete):
                if not target.exists():  # the Hub refuses to delete what is not there
                    raise FileNotFoundError(f"fake hub: {op.path_in_repo} is not on {repo_id}@{branch}")
                shutil.rmtree(target) if target.is_dir() else target.unlink()
                deleted.append(op.path_in_repo)
            else:
                raise NotImplementedError(f"fake hub: {type(op).__name__}")
        (repo / "refs" / branch).write_text(sha)
        self.commits.append(dict(repo_id=repo_id, branch=branch, message=message, added=added, deleted=deleted,
                                 repo_type=repo_type or "model"))
        url = f"{constants.ENDPOINT}/{repo_id}/commit/{sha}"
        return CommitInfo(commit_url=url, commit_message=message, commit_description="", oid=sha, pr_url=None)


PATCHED = ("whoami", "create_repo", "create_branch", "create_commit", "upload_folder")


def _is_loopback(host) -> bool:
    if host is None:  # getaddrinfo(None, port): a local address to bind to
        return True
    host = (host.decode() if isinstance(host, bytes) else str(host)).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _network_guard(blocked: list) -> dict:
    """Replacements for `socket` functions: any connect / DNS look-up off 127.0.0.1 / ::1 raises, and is recorded."""
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guard(kind, host, what):
        if not _is_loopback(host):
            blocked.append((kind, what))
            raise ConnectionRefusedError(f"local_hub: network access to {what!r} blocked during the test")

    def checked(original):
        def call(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                guard("connect", address[0], address)
            return original(sock, address)
        return call

    def checked_getaddrinfo(host, *args, **kwargs):
        guard("getaddrinfo", host, host)
        return getaddrinfo(host, *args, **kwargs)

    return {(socket.socket, "connect"): checked(connect), (socket.socket, "connect_ex"): checked(connect_ex),
            (socket, "getaddrinfo"): checked_getaddrinfo}


@contextlib.contextmanager
def installed(root: Path):
    """The fake hub in this process until the block ends: `HfApi` patched, offline mode with the Hub cache at
    ``root`` (also in ``os.environ``, for subprocesses), the network guard on. Yields the `FakeHub`."""
    hub = FakeHub(root)
    hub.root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        # Offline: downloads resolve from the fake hub's folders (the cache) and never try the network.
        for name, value in (("HF_HUB_OFFLINE", True), ("HF_HUB_CACHE", str(hub.root))):
            stack.enter_context(mock.patch.object(constants, name, value))
        stack.enter_context(mock.patch.dict(os.environ, {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub.root)}))
        for (owner, name), replacement in _network_guard(hub.blocked).items():
            stack.enter_context(mock.patch.object(owner, name, replacement))
        hub.calls = {name: stack.enter_context(mock.patch.object(HfApi, name, autospec=True,
                                                                 side_effect=getattr(hub, name)))
                     for name in PATCHED}
        yield hub


@pytest.fixture
def local_hub(tmp_path):
    """A fresh `FakeHub` for one test: ``.branches(repo_id)``, ``.files(repo_id, branch)``, ``.path(repo_id, branch)``,
    ``.sha(repo_id, branch)`` (each with ``repo_type=``), ``.commits``, ``.blocked``, ``.calls[name]`` (the `HfApi`
    method mocks), ``.user``, ``.root``."""
    with installed(tmp_path / "fake_hub") as hub:
        yield hub
    assert not hub.blocked, f"the test tried to reach the network: {hub.blocked}"
