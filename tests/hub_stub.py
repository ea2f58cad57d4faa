"""`local_hub`: a pytest fixture that fakes the Hugging Face Hub for the real `huggingface_hub` client.

Five `HfApi` methods (create_repo, create_branch, upload_folder, create_commit, whoami) are replaced, on the class,
by `FakeHub` methods; `autospec` keeps the real signatures, so a call with a wrong argument still fails. Everything
else is the real library: our code and transformers' `push_to_hub` build their own `HfApi`, `upload_folder` applies
allow/ignore/delete patterns with `huggingface_hub.utils.filter_repo_objects` exactly as the real one does, and
loading goes through real `hf_hub_download` in offline mode.

Storage is a Hub *cache* (the documented layout ``models--{org}--{name}/refs/{branch}`` holding a commit sha, and
``snapshots/{sha}/`` holding that commit's files), and `huggingface_hub.constants.HF_HUB_CACHE` points at it. So
``from_pretrained(repo_id, revision="round-1")``, ``pipeline(model=repo_id)`` and ``ModelCard.load(repo_id)`` read
what was pushed, and each branch is also a plain folder (``local_hub.path(repo_id, branch)``).

The fixture also turns offline mode on and makes any non-loopback connect or DNS lookup raise (recorded in
``local_hub.blocked``; the test fails at teardown if anything was blocked).

    # tests/conftest.py registers this module as a plugin (pytest_plugins), so tests just name the fixture:

    def test_push(local_hub):
        push_csl_outputs(out, "stub-user/tiny")
        assert local_hub.branches("stub-user/tiny") == {"main", "round-0"}
        assert local_hub.files("stub-user/tiny", "round-0") == {".gitattributes", "config.json", ...}
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import shutil
import socket
from pathlib import Path
from unittest import mock

import pytest
from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi, RepoUrl, constants
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id

USER = "stub-user"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"  # what the Hub puts in a new repo


class FakeHub:
    """Repos as Hub-cache folders under `root`; the `HfApi` stand-ins and what tests read back."""

    user = USER

    def __init__(self, root: Path):
        self.root = Path(root)
        self.commits: list[dict] = []  # {"repo_id", "branch", "message", "added", "deleted"}, in push order
        self.blocked: list[tuple[str, object]] = []  # non-loopback connects / DNS look-ups the guard refused

    # -------------------------------------------------------------- reading back (for assertions)
    def _folder(self, repo_id: str) -> Path:
        return self.root / f"models--{repo_id.replace('/', '--')}"

    def _repo(self, repo_id: str) -> Path:
        repo = self._folder(repo_id)
        if not repo.is_dir():
            raise FileNotFoundError(f"fake hub: no repo {repo_id!r} (create_repo first)")
        return repo

    def branches(self, repo_id: str) -> set[str]:
        return {ref.name for ref in (self._repo(repo_id) / "refs").iterdir()}

    def sha(self, repo_id: str, branch: str = "main") -> str:
        ref = self._repo(repo_id) / "refs" / branch
        if not ref.is_file():  # like the Hub: commits go to existing branches only
            raise FileNotFoundError(f"fake hub: no branch {branch!r} in {repo_id!r} (create_branch first)")
        return ref.read_text()

    def path(self, repo_id: str, branch: str = "main") -> Path:
        """The folder holding `branch` as it is now (a snapshot: load it with ``from_pretrained(path)``)."""
        return self._repo(repo_id) / "snapshots" / self.sha(repo_id, branch)

    def files(self, repo_id: str, branch: str = "main") -> set[str]:
        root = self.path(repo_id, branch)
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    # -------------------------------------------------------------- the HfApi methods (`api` is the HfApi instance)
    def whoami(self, api, token=None, **_):
        return {"type": "user", "name": self.user}

    def create_repo(self, api, repo_id, *, repo_type=None, exist_ok=False, **_):
        assert repo_type in (None, "model"), "the fake hub only holds model repos"
        repo_id = repo_id if "/" in repo_id else f"{self.user}/{repo_id}"  # the Hub adds the caller's namespace
        validate_repo_id(repo_id)
        repo = self._folder(repo_id)
        if repo.exists() and not exist_ok:
            raise FileExistsError(f"fake hub: {repo_id} exists")
        if not repo.exists():
            (repo / "refs").mkdir(parents=True)
            self._commit(repo_id, "main", None, "initial commit", [CommitOperationAdd(".gitattributes", GITATTRIBUTES)])
        return RepoUrl(f"{constants.ENDPOINT}/{repo_id}")

    def create_branch(self, api, repo_id, *, branch, revision=None, repo_type=None, exist_ok=False, **_):
        refs = self._repo(repo_id) / "refs"
        if (refs / branch).exists():
            if not exist_ok:
                raise FileExistsError(f"fake hub: branch {branch!r} exists in {repo_id}")
            return
        # As on the Hub, a new branch starts at its starting point's commit: it holds all of that branch's files.
        (refs / branch).write_text(self.sha(repo_id, revision or "main"))

    def create_commit(self, api, repo_id, operations, *, commit_message, revision=None, repo_type=None,
                      create_pr=None, **_):
        assert not create_pr and repo_type in (None, "model"), "the fake hub commits to model-repo branches only"
        return self._commit(repo_id, revision or "main", self.sha(repo_id, revision or "main"), commit_message,
                            list(operations))

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
            remote = sorted(self.files(repo_id, revision or "main"))
            added = {op.path_in_repo for op in adds}
            deletes = [CommitOperationDelete(path_in_repo=p)
                       for p in filter_repo_objects(remote, allow_patterns=delete_patterns)
                       if p != ".gitattributes" and p not in added]
        # through `api`, so the (patched) create_commit is what writes, as with the real client
        return api.create_commit(repo_id, deletes + adds, commit_message=commit_message or "Upload folder",
                                 revision=revision, repo_type=repo_type)

    # -------------------------------------------------------------- storage
    def _commit(self, repo_id, branch, parent, message, operations) -> CommitInfo:
        repo = self._folder(repo_id)
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
        self.commits.append(dict(repo_id=repo_id, branch=branch, message=message, added=added, deleted=deleted))
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


def _block_network(monkeypatch, blocked: list) -> None:
    """Any connect / DNS look-up off 127.0.0.1 / ::1 raises for the rest of the test, and is recorded."""
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

    monkeypatch.setattr(socket.socket, "connect", checked(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", checked(connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", checked_getaddrinfo)


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """A fresh `FakeHub` for one test: ``.branches(repo_id)``, ``.files(repo_id, branch)``, ``.path(repo_id, branch)``,
    ``.sha(repo_id, branch)``, ``.commits``, ``.blocked``, ``.calls[name]`` (the `HfApi` method mocks), ``.user``."""
    hub = FakeHub(tmp_path / "fake_hub")
    hub.root.mkdir()
    # Offline: downloads resolve from the fake hub's folders (the cache) and never try the network.
    for name, value in (("HF_HUB_OFFLINE", True), ("HF_HUB_CACHE", str(hub.root))):
        monkeypatch.setattr(constants, name, value)
        monkeypatch.setenv(name, "1" if value is True else value)  # for subprocesses
    _block_network(monkeypatch, hub.blocked)
    with contextlib.ExitStack() as stack:
        hub.calls = {name: stack.enter_context(mock.patch.object(HfApi, name, autospec=True,
                                                                 side_effect=getattr(hub, name)))
                     for name in PATCHED}
        yield hub
    assert not hub.blocked, f"the test tried to reach the network: {hub.blocked}"
