"""Weights downloads against a loopback HTTP server (127.0.0.1 only, started and stopped here):
a good file lands and is used, a corrupt or cut-off one leaves nothing, offline asks nothing."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torchvision

from oodml import hub
from oodml.errors import ConfigError
from oodml.features import load_extractor
from oodml.features.extractors import RESNET50_FILE
from oodml.train.models import build_backbone


@dataclass
class Served:
    """What the loopback server hands out and what it was asked for."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


def make_handler(served: Served) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            served.requests.append(self.path)
            name = self.path.lstrip("/")
            body = served.files.get(name)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = served.cut_after.get(name)
            self.wfile.write(body if cut is None else body[:cut])
            self.wfile.flush()
            if cut is not None:
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture()
def server() -> Iterator[tuple[str, Served]]:
    served = Served()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(served))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture()
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv(hub.OFFLINE_ENV, raising=False)
    return home


def checkpoints(home: Path) -> Path:
    return home / "hub" / "checkpoints"


def state_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def test_good_download_lands_with_progress(server, torch_home):
    url, served = server
    body = b"weights " * 5000
    served.files["w-0001.pth"] = body
    sha = hashlib.sha256(body).hexdigest()
    seen: list[tuple[int, int | None]] = []
    path = hub.fetch_checkpoint(
        "w-0001.pth", f"{url}/w-0001.pth", sha, what="test", where="a test",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert path == checkpoints(torch_home) / "w-0001.pth"
    assert path.read_bytes() == body
    assert seen[0] == (0, len(body)) and seen[-1] == (len(body), len(body))
    assert [p.name for p in checkpoints(torch_home).iterdir()] == ["w-0001.pth"]
    again = hub.fetch_checkpoint("w-0001.pth", f"{url}/w-0001.pth", sha, what="t", where="t")
    assert again == path and served.requests == ["/w-0001.pth"]


def test_wrong_hash_is_refused_and_leaves_nothing(server, torch_home):
    url, served = server
    served.files["w.pth"] = b"corrupt bytes"
    with pytest.raises(hub.DownloadError, match="sha256") as err:
        hub.fetch_checkpoint("w.pth", f"{url}/w.pth", "ab" * 32, what="test", where="a test")
    assert "\n" not in str(err.value) and str(checkpoints(torch_home) / "w.pth") in str(err.value)
    assert list(checkpoints(torch_home).iterdir()) == []
    assert served.requests == ["/w.pth"]


def test_dropped_connection_leaves_nothing(server, torch_home):
    url, served = server
    body = bytes(range(256)) * 400
    served.files["w.pth"] = body
    served.cut_after["w.pth"] = len(body) // 3
    with pytest.raises(hub.DownloadError) as err:
        hub.fetch_checkpoint(
            "w.pth", f"{url}/w.pth", hashlib.sha256(body).hexdigest(), what="test", where="t"
        )
    assert "\n" not in str(err.value)
    assert list(checkpoints(torch_home).iterdir()) == []


def test_missing_file_on_server_is_one_line(server, torch_home):
    url, _ = server
    with pytest.raises(hub.DownloadError, match="404") as err:
        hub.fetch_checkpoint("w-12345678.pth", f"{url}/w-12345678.pth", what="x", where="y")
    assert "\n" not in str(err.value) and "--weights" in str(err.value)
    assert list(checkpoints(torch_home).iterdir()) == []


@pytest.mark.parametrize("how", ["env", "argument"])
def test_offline_makes_no_request(server, torch_home, monkeypatch, how):
    url, served = server
    served.files["w.pth"] = b"x"
    if how == "env":
        monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    kwargs = {"offline": True} if how == "argument" else {}
    with pytest.raises(ConfigError, match="downloads are off") as err:
        hub.fetch_checkpoint(
            "w.pth", f"{url}/w.pth", hashlib.sha256(b"x").hexdigest(),
            what="test", where="a test", **kwargs,
        )
    assert str(checkpoints(torch_home) / "w.pth") in str(err.value)
    assert served.requests == []


def test_hash_prefix_from_torchvision_names():
    assert hub.hash_prefix_of("resnet50-0676ba61.pth") == "0676ba61"
    assert hub.hash_prefix_of("pt_inception-2015-12-05-6726825d.pth") == "6726825d"
    assert hub.hash_prefix_of("plain.pth") is None


def resnet18_state() -> tuple[dict[str, torch.Tensor], bytes, str]:
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    body = state_bytes(state)
    return state, body, hashlib.sha256(body).hexdigest()


@pytest.fixture
def served_resnet18(server, monkeypatch):
    """resnet18's state, file bytes and torchvision file name (hash prefix in the name), served
    by the loopback server as torchvision's ImageNet file; and the server's record."""
    url, served = server
    state, body, sha = resnet18_state()
    filename = f"resnet18-{sha[:8]}.pth"
    served.files[filename] = body
    monkeypatch.setattr(
        "oodml.train.models.torchvision_weights_url", lambda arch: (filename, f"{url}/{filename}")
    )
    return state, body, filename, served


def test_backbone_download_is_used(served_resnet18, torch_home):
    """A torchvision backbone by name fetches its ImageNet file (hash prefix from its name)."""
    state, body, filename, served = served_resnet18
    net, dim = build_backbone("resnet18", "imagenet")
    assert dim == 512 and served.requests == [f"/{filename}"]
    assert (checkpoints(torch_home) / filename).read_bytes() == body
    torch.testing.assert_close(net.state_dict()["conv1.weight"], state["conv1.weight"])


def test_backbone_offline_names_file(served_resnet18, torch_home, monkeypatch):
    _, _, filename, served = served_resnet18
    monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    with pytest.raises(ConfigError, match=filename) as err:
        build_backbone("resnet18", "imagenet")
    assert "\n" not in str(err.value) and served.requests == []


def test_resnet50_extractor_downloads_and_is_used(server, torch_home, monkeypatch):
    """The resnet50 extractor fetches its file when missing and records that file's sha256."""
    url, served = server
    torch.manual_seed(0)
    state = torchvision.models.resnet50(weights=None).state_dict()
    body = state_bytes(state)
    sha = hashlib.sha256(body).hexdigest()
    served.files[RESNET50_FILE] = body
    monkeypatch.setattr(
        "oodml.features.extractors.RESNET50_SOURCE", (f"{url}/{RESNET50_FILE}", sha)
    )
    net = load_extractor("resnet50")
    assert net.weights_sha256 == sha and served.requests == [f"/{RESNET50_FILE}"]
    assert net.weights_path == checkpoints(torch_home) / RESNET50_FILE
    torch.testing.assert_close(net.model.conv1.weight, state["conv1.weight"])
