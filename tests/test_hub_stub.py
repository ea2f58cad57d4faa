"""The local Hub stand-in, driven by the real huggingface_hub client and transformers."""

import os
import socket

import pytest
import torch
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from transformers import AutoModelForImageClassification, ViTConfig, ViTForImageClassification

from hub_stub import HubStub, hub_server, local_hub, patched_hub_env  # noqa: F401  (local_hub is a fixture)


def tiny_vit(seed: int) -> ViTForImageClassification:
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        num_labels=3,
    )
    torch.manual_seed(seed)
    return ViTForImageClassification(config).eval()


@torch.no_grad()
def logits(model, pixels):
    return model(pixel_values=pixels).logits


def test_push_branches_and_reload_bit_identical(local_hub):
    api = HfApi()
    repo_id = api.create_repo("tiny-vit-csl", private=True, exist_ok=True).repo_id
    assert repo_id == "stub-user/tiny-vit-csl"
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id  # idempotent

    round0, round1 = tiny_vit(seed=0), tiny_vit(seed=1)
    round0.push_to_hub(repo_id, commit_message="round 0")
    api.create_branch(repo_id, branch="round-1", exist_ok=True)
    api.create_branch(repo_id, branch="round-1", exist_ok=True)  # exists -> no error
    round1.push_to_hub(repo_id, revision="round-1", commit_message="round 1")

    refs = api.list_repo_refs(repo_id)
    branches = {b.name: b.target_commit for b in refs.branches}
    assert set(branches) == {"main", "round-1"}
    assert branches["main"] != branches["round-1"]

    for revision in ("main", "round-1"):
        files = api.list_repo_files(repo_id, revision=revision)
        assert {"config.json", "model.safetensors", "README.md"} <= set(files)

    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(123))
    loaded1 = AutoModelForImageClassification.from_pretrained(repo_id, revision="round-1").eval()
    loaded0 = AutoModelForImageClassification.from_pretrained(repo_id, revision="main").eval()
    assert isinstance(loaded1, ViTForImageClassification)
    assert torch.equal(logits(loaded1, pixels), logits(round1, pixels))  # bit-identical
    assert torch.equal(logits(loaded0, pixels), logits(round0, pixels))  # main is untouched by round-1
    assert not torch.equal(logits(loaded0, pixels), logits(loaded1, pixels))

    # a commit sha works as a revision too, and resolves to the branch it came from
    by_sha = AutoModelForImageClassification.from_pretrained(repo_id, revision=branches["round-1"]).eval()
    assert torch.equal(logits(by_sha, pixels), logits(round1, pixels))
    assert api.model_info(repo_id, revision="round-1").sha == branches["round-1"]
    assert [c.title for c in api.list_repo_commits(repo_id, revision="round-1")][:1] == ["round 1"]

    # everything went inline: no LFS / Xet traffic, no request the stub did not understand
    assert local_hub.unhandled == []
    assert local_hub.blocked == []  # nothing tried to leave 127.0.0.1
    assert not any("lfs" in path or "xet" in path for _, path in local_hub.requests)


def test_upload_folder_snapshot_and_errors(local_hub, tmp_path):
    api = HfApi()
    repo_id = api.create_repo("stub-org/data-repo", exist_ok=True).repo_id
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("hello")
    (folder / "sub" / "b.json").write_text('{"x": 1}')
    (folder / "empty.txt").write_bytes(b"")

    api.create_branch(repo_id, branch="dev", exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision="dev", commit_message="add files")
    assert api.list_repo_refs(repo_id).branches and info.oid == api.model_info(repo_id, revision="dev").sha

    expected = [".gitattributes", "a.txt", "empty.txt", "sub/b.json"]
    assert sorted(api.list_repo_files(repo_id, revision="dev")) == expected
    assert api.list_repo_files(repo_id) == [".gitattributes"]  # main untouched
    top = {entry.path for entry in api.list_repo_tree(repo_id, revision="dev")}
    assert top == {".gitattributes", "a.txt", "empty.txt", "sub"}

    snap = snapshot_download(repo_id, revision="dev")
    assert (open(os.path.join(snap, "sub", "b.json")).read()) == '{"x": 1}'
    assert os.path.getsize(os.path.join(snap, "empty.txt")) == 0
    path = hf_hub_download(repo_id, "a.txt", revision="dev")
    assert open(path).read() == "hello"
    assert path.startswith(str(constants.HF_HUB_CACHE))  # the per-test cache, not ~/.cache

    # a second identical upload is a no-op commit (preupload returns the remote oids)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision="dev", commit_message="again")
    assert len(api.list_repo_commits(repo_id, revision="dev")) == 2  # initial + "add files"

    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt", revision="dev")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "a.txt", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("stub-user/does-not-exist")
    assert local_hub.unhandled == []
    assert local_hub.blocked == []


def test_network_guard_blocks_non_loopback(local_hub):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(OSError, match="blocked"):
            sock.connect(("93.184.216.34", 443))
    with pytest.raises(OSError, match="blocked"):
        socket.getaddrinfo("huggingface.co", 443)
    socket.create_connection(("127.0.0.1", local_hub.port), timeout=1).close()  # loopback is fine
    assert [kind for kind, _ in local_hub.blocked] == ["connect", "getaddrinfo"]


def test_hub_server_context_manager_and_restore(tmp_path):
    """The bare server (no fixture), with an explicit endpoint; patched_hub_env restores what it changed."""
    before = (constants.ENDPOINT, constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE, os.environ.get("HF_ENDPOINT"))
    with hub_server() as endpoint:
        assert endpoint.startswith("http://127.0.0.1:")
        with patched_hub_env(endpoint, str(tmp_path / "cache")) as blocked:
            api = HfApi(endpoint=endpoint)
            repo_id = api.create_repo("plain", exist_ok=True).repo_id
            api.upload_file(path_or_fileobj=b"42", path_in_repo="answer.txt", repo_id=repo_id)
            assert open(hf_hub_download(repo_id, "answer.txt")).read() == "42"
            assert constants.ENDPOINT == endpoint and not constants.HF_HUB_OFFLINE
        assert blocked == []
    after = (constants.ENDPOINT, constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE, os.environ.get("HF_ENDPOINT"))
    assert after == before


def test_stub_rejects_non_loopback_bind():
    with pytest.raises(ValueError, match="loopback"):
        HubStub(host="0.0.0.0")
