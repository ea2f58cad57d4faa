"""The `local_hub` fixture itself: the Hub behaviour the push tests rely on, transformers' push/load path through it,
and the network guard."""

import socket

import pytest
import torch
from huggingface_hub import HfApi
from transformers import AutoModelForImageClassification, ViTConfig, ViTForImageClassification



def tiny_vit(seed: int) -> ViTForImageClassification:
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=16,
                       patch_size=8, num_labels=3)
    torch.manual_seed(seed)
    return ViTForImageClassification(config).eval()


def test_branches_and_patterns_behave_like_the_hub(local_hub, tmp_path):
    """What makes the push tests able to fail: a new branch starts with its starting point's files (so a push that
    forgot `delete_patterns` leaves them there), patterns are the real library's, commits need an existing branch."""
    api = HfApi()
    repo_id = api.create_repo("repo", exist_ok=True).repo_id
    assert repo_id == "stub-user/repo" and api.whoami()["name"] == "stub-user"
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.bin", "sub/c.txt", ".hidden", ".git/config"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)

    # allow/ignore as in `huggingface_hub.utils.filter_repo_objects` ("*" crosses "/"); .git/ is always skipped
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=["*.txt", ".*"],
                      ignore_patterns=["sub/*"])
    assert local_hub.files(repo_id) == {".gitattributes", "a.txt", ".hidden"}

    api.create_branch(repo_id, branch="dev", exist_ok=True)
    assert local_hub.files(repo_id, "dev") == local_hub.files(repo_id)  # inherited from main
    (folder / "a.txt").unlink()
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision="dev", delete_patterns=["*"])
    assert local_hub.files(repo_id, "dev") == {".gitattributes", "b.bin", ".hidden", "sub/c.txt"}  # a.txt deleted
    assert local_hub.files(repo_id) == {".gitattributes", "a.txt", ".hidden"}  # main untouched
    assert local_hub.commits[-1]["deleted"] == ["a.txt"] and local_hub.commits[-1]["branch"] == "dev"

    with pytest.raises(FileNotFoundError, match="no branch"):
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision="never-created")
    with pytest.raises(TypeError):  # autospec: the real signature is enforced (branch is keyword-only)
        api.create_branch(repo_id, "dev")
    api.create_branch(repo_id, branch="dev", exist_ok=True)  # exists: no error, no change
    assert local_hub.calls["create_branch"].call_count == 2  # the call with a wrong signature never reached it


def test_transformers_push_to_hub_and_from_pretrained(local_hub):
    """`PreTrainedModel.push_to_hub` (create_repo / create_branch / create_commit through transformers' own HfApi)
    lands in the fake, and `from_pretrained(repo_id, revision=...)` reads it back bit-identically."""
    main, dev = tiny_vit(0), tiny_vit(1)
    main.push_to_hub("stub-user/tiny", commit_message="first")
    dev.push_to_hub("stub-user/tiny", revision="dev")
    assert local_hub.branches("stub-user/tiny") == {"main", "dev"}
    assert {"config.json", "model.safetensors", "README.md"} <= local_hub.files("stub-user/tiny", "dev")
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for revision, model in (("main", main), ("dev", dev)):
            loaded = AutoModelForImageClassification.from_pretrained("stub-user/tiny", revision=revision).eval()
            assert torch.equal(loaded(pixel_values=pixels).logits, model(pixel_values=pixels).logits), revision


def test_network_guard_blocks_non_loopback(local_hub):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(OSError, match="blocked"):
            sock.connect(("93.184.216.34", 443))
    with pytest.raises(OSError, match="blocked"):
        socket.getaddrinfo("huggingface.co", 443)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:  # loopback stays usable
        server.bind(("127.0.0.1", 0))
        server.listen()
        socket.create_connection(server.getsockname(), timeout=1).close()
    assert [kind for kind, _ in local_hub.blocked] == ["connect", "getaddrinfo"]
    local_hub.blocked.clear()  # expected here; any other test fails at teardown when something was blocked
