"""Hostile values and environments (issue 28, items 9, 12, 13 and its unclear messages): huge
counts and rates, a huge head, a non-UTF-8 terminal, no file descriptors left, a server that is
not Ray, non-finite loss arguments, numbers of thousands of digits and a TOML byte-order mark.
Each is a one-line error naming the field (or works), before any work starts."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import threading
import time
import typing
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from oodml import config as C
from oodml.config import check_int, field_help, optional_inner, parse_kv
from oodml.errors import ConfigError, TrainingError
from oodml.features.options import FeatureOptions
from oodml.splits.generate import LadderConfig, check_generation_cost
from oodml.splits.procedures import GreedyParams, OodmlParams
from oodml.sweep.config import load_config
from oodml.sweep.ray_backend import probe_address
from oodml.sweep.run import SweepRun
from oodml.train.loop import TensorInputs, TrainConfig, train
from oodml.train.losses import build_loss, resolve_loss_args
from oodml.train.miners import resolve_miner_args
from oodml.train.models import EmbeddingHead, build_model
from oodml.train.samplers import build_sampler
from oodml.train.spec import FewshotConfig, RunSpec, check_seeds
from oodml_cli import main

REPO = Path(__file__).resolve().parents[1]
BIG = "9" * 5000


def one_line_error(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0, err
    assert "Traceback" not in err and "unexpected" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def train_args(study, out: Path, *extra: str) -> list[str]:
    return ["evaluate", str(study.splitfile), "--root", str(study.root), "--cache",
            str(study.cache_dir), "--out", str(out), "--loss", "contrastive", "--epochs", "1",
            "--batch-size", "12", "--m", "2", "--no-checkpoints", *extra]


# --- item 9: crashes through the catch-all ----------------------------------------------------


def test_lr_1e300_is_a_one_line_error_naming_lr(study, tmp_path, cli):
    code, _, err = cli(*train_args(study, tmp_path / "o", "--lr", "1e300"))
    assert "lr=1e+300 must be <= 10" in one_line_error(code, err)
    assert not (tmp_path / "o" / "runs").exists()
    assert str(int(C.MAX_LR)) in field_help(TrainConfig, "lr")


def small_inputs() -> tuple[TensorInputs, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 8)
    feats = rng.normal(size=(6, 12))[labels] + rng.normal(size=(48, 12))
    return TensorInputs(feats.astype(np.float32), labels), labels


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_an_overflowing_update_names_the_settings_and_not_the_optimizer_in_use(optimizer):
    """A step schedule with gamma=1e300 makes lr 1e297 at epoch 2: torch's update overflows
    (was "unexpected RuntimeError: value cannot be converted ... without overflow")."""
    inputs, labels = small_inputs()
    cfg = TrainConfig(epochs=3, batch_size=16, m=4, optimizer=optimizer, schedule="step",
                      step_size=1, gamma=1e300)
    with pytest.raises(TrainingError) as err:
        train(build_model(None, in_dim=12, dim=8),
              build_loss("contrastive", num_classes=6, embedding_size=8), None, inputs,
              build_sampler("m-per-class", labels, 16, 0, 4), cfg, device=torch.device("cpu"))
    msg = str(err.value)
    assert "diverged at epoch 2 (the update overflowed)" in msg and "lr=0.001" in msg, msg
    assert "gamma=1e+300" in msg and "\n" not in msg
    assert ("optimizer adam" in msg) == (optimizer != "adam"), msg


def test_a_loss_that_becomes_inf_points_at_lr_and_the_loss_arguments():
    inputs, labels = small_inputs()
    with pytest.raises(TrainingError) as err:
        train(build_model(None, in_dim=12, dim=8),
              build_loss("contrastive", num_classes=6, embedding_size=8, args="neg_margin=1e38"),
              None, inputs, build_sampler("m-per-class", labels, 16, 0, 4),
              TrainConfig(epochs=1, batch_size=16, m=4), device=torch.device("cpu"))
    msg = str(err.value)
    assert "loss became inf" in msg and "lr=0.001" in msg and "loss arguments" in msg
    assert "try optimizer adam" not in msg  # adam is the optimizer in use


def test_embed_dim_1e8_is_refused_before_anything_is_allocated(study, tmp_path, cli):
    code, _, err = cli(*train_args(study, tmp_path / "o", "--embed-dim", "100000000"))
    assert "embed_dim=100000000 must be <= 16384" in one_line_error(code, err)
    assert "16,384" in field_help(RunSpec, "embed_dim")


def test_a_head_above_the_parameter_bound_is_refused_before_allocation(monkeypatch):
    """Both widths within their bounds, the product not: refused before nn.Linear runs."""
    made = []
    monkeypatch.setattr(torch.nn, "Linear", lambda *a, **k: made.append(a))
    with pytest.raises(ConfigError, match=r"embed_dim=16384, hidden=16384 make a 2048 x 16384 "
                       r"x 16384 head of 302,?\d*.* lower embed_dim or hidden"):
        EmbeddingHead(2048, 16384, 16384)
    assert made == []
    monkeypatch.undo()
    n = sum(p.numel() for p in EmbeddingHead(64, 32, 16).parameters())
    assert n == 64 * 16 + 16 + 16 * 32 + 32


def test_splits_show_on_an_ascii_stream_prints_ascii_stand_ins(study, monkeypatch):
    """PYTHONIOENCODING=ascii: the table title holds '·' (was "unexpected UnicodeEncodeError");
    rich and typer output both go through the entry point's stream setup."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", write_through=True)
    errs = io.TextIOWrapper(io.BytesIO(), encoding="ascii", write_through=True)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", errs)
    try:
        main(["splits", "show", str(study.splitfile)])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    data, err_data = out.buffer.getvalue(), errs.buffer.getvalue()
    monkeypatch.undo()
    assert code == 0, err_data
    assert data.isascii() and b"imagefolder (" in data and b" . efficientnet-lite0 . " in data, data
    assert b"split file sha256" in data


def test_ascii_stand_ins_for_oodml_characters():
    from oodml_cli.ui import SAFE_PREFIX

    text = "a \u00b7 b \u00b1 c caf\u00e9 \u2192 \u6f22"
    assert text.encode(SAFE_PREFIX + "ascii") == b"a . b +/- c cafe -> ?"
    assert text.encode(SAFE_PREFIX + "latin-1") == "a \u00b7 b \u00b1 c caf\u00e9 -> ?".encode(
        "latin-1")


EMFILE_CHILD = """
import os, resource, sys
import torch.utils.data
import oodml.splits.splitfile
from oodml_cli import main

def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True

def no_descriptor_left(spare=0):
    open_fds = {int(fd) for fd in os.listdir("/proc/self/fd") if is_open(int(fd))}
    lowest_free = min(set(range(len(open_fds) + 2)) - open_fds)  # listdir's own fd is closed
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free + spare, hard))

def load_with_workers(path):
    # what feature extraction does: a DataLoader with decoding worker processes; one spare
    # descriptor lets torch's C cpuinfo read /proc/cpuinfo (it prints to stderr when it cannot),
    # a worker queue's pipe needs two
    no_descriptor_left(spare=1)
    return next(iter(torch.utils.data.DataLoader(list(range(8)), num_workers=2)))

if sys.argv[2] == "import":
    sys.modules.pop("oodml.splits.splitfile")  # the command imports it again: an open()
    no_descriptor_left()
else:
    oodml.splits.splitfile.load_splitfile = load_with_workers
main(["splits", "show", sys.argv[1]])
"""


@pytest.mark.parametrize("where", ["import", "dataloader"])
def test_no_file_descriptor_left_is_a_one_line_error(study, where):
    """Under RLIMIT_NOFILE at the descriptors already open, the command's first open fails
    with EMFILE: in an import (and the error handler's own lazy import failed too: a raw
    traceback before), or creating a DataLoader's worker queues (whose half-built iterator
    then printed 'Exception ignored in' on the way out)."""
    proc = subprocess.run([sys.executable, "-c", EMFILE_CHILD, str(study.splitfile), where],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: too many open files: this process may have ")
    assert "ulimit -n" in lines[0]


# --- item 12: counts with an upper bound ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--bootstrap", "1000000000"], "bootstrap=1000000000 must be an integer >= 0 and <= "
                                        "10000"),
        (["--episodes", "1000000000"], "episodes=1000000000 must be an integer >= 1 and <= 1000"),
        (["--levels", "1000000"], "levels=1000000 must be an integer >= 1 and <= 1000"),
        (["--shots", "2,5000"], "shots=[2, 5000] must list at most 16 shot counts, each at most "
                                "1000"),
        (["--param", "max_steps=10000000"], "max_steps=10000000 must be an integer >= 0 and <= "
                                            "100000"),
    ],
)
def test_generate_counts_are_refused_before_any_work(tmp_path, cli, args, needle):
    code, _, err = cli("splits", "generate", "omniglot", "--root", str(tmp_path / "no"),
                       "-o", str(tmp_path / "sf.json"), *args)
    assert needle in one_line_error(code, err)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--epochs", "10000000000000"], "epochs=10000000000000 must be <= 10000"),
        (["--batch-size", "100000"], "batch_size=100000 must be <= 65536"),
        (["--num-workers", "100000"], "num_workers=100000 must be <= 256"),
        (["--gallery-draws", "1000000"], "gallery_draws=1000000 must be <= 1000"),
        (["--seeds", ",".join(map(str, range(1001)))], "seeds lists 1,001 seeds; at most 1,000"),
    ],
)
def test_evaluate_counts_are_refused_before_any_work(study, tmp_path, cli, args, needle):
    code, _, err = cli(*train_args(study, tmp_path / "o", *args))
    assert needle in one_line_error(code, err)


CONFIGS = {
    TrainConfig: {},
    RunSpec: {"splitfile": "s", "root": "r", "split_id": 1, "seed": 0, "loss": "triplet",
              "results_dir": "o"},
    FewshotConfig: {},
    LadderConfig: {},
    GreedyParams: {},
    OodmlParams: {},
    FeatureOptions: {},
    SweepRun: {},
}


def int_fields(cls: type) -> list[tuple[str, bool]]:
    """(name, is a tuple of ints) of every integer field of ``cls``."""
    out = []
    for f in dataclasses.fields(cls):
        inner = optional_inner(typing.get_type_hints(cls)[f.name])[1]
        if inner is int:
            out.append((f.name, False))
        elif typing.get_origin(inner) is tuple and typing.get_args(inner)[0] is int:
            out.append((f.name, True))
    return out


@pytest.mark.parametrize("cls", list(CONFIGS), ids=lambda c: c.__name__)
def test_every_integer_field_of_every_typed_config_has_an_upper_bound(cls):
    """2**64 in any integer field (a count, a size, an id, a seed) is a ConfigError naming the
    field, so the CLI, a TOML sweep and the Python API all refuse it before any work."""
    fields = int_fields(cls)
    assert fields, cls
    for name, is_tuple in fields:
        value = (2**64,) if is_tuple else 2**64
        with pytest.raises(ConfigError, match=name) as err:
            cls(**{**CONFIGS[cls], name: value})
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("cls", "name", "bound"),
    [(TrainConfig, "epochs", C.MAX_EPOCHS), (TrainConfig, "batch_size", C.MAX_BATCH),
     (TrainConfig, "num_workers", C.MAX_WORKERS), (RunSpec, "gallery_draws", C.MAX_DRAWS),
     (RunSpec, "hidden", C.MAX_WIDTH), (FewshotConfig, "ft_epochs", C.MAX_EPOCHS),
     (FewshotConfig, "max_episodes", C.MAX_EPISODES), (FeatureOptions, "batch_size", C.MAX_BATCH),
     (FeatureOptions, "num_workers", C.MAX_WORKERS)],
)
def test_the_help_of_a_count_states_its_bound_and_the_bound_is_exact(cls, name, bound):
    assert f"{bound:,}" in field_help(cls, name)
    base = CONFIGS[cls]
    assert getattr(cls(**{**base, name: bound}), name) == bound
    with pytest.raises(ConfigError, match=f"{name}={bound + 1} must be <= {bound}"):
        cls(**{**base, name: bound + 1})


def test_seed_lists_are_bounded_in_evaluate_and_sweeps(tmp_path):
    assert check_seeds(range(C.MAX_SEEDS)) == tuple(range(C.MAX_SEEDS))
    with pytest.raises(ConfigError, match="seeds lists 1,001 seeds; at most 1,000"):
        check_seeds(range(1001))
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(f'splitfile = "s.json"\nroot = "r"\nresults = "o"\nseeds = {list(range(1001))}'
                   '\n[[methods]]\nloss = "triplet"\n')
    with pytest.raises(ConfigError, match=f"sweep config {cfg}: seeds lists 1,001 seeds"):
        load_config(cfg)


def fake_manifest(n_classes: int, per_class: int) -> SimpleNamespace:
    classes = tuple(f"c{i:03d}" for i in range(n_classes))
    return SimpleNamespace(classes=classes, default_train=classes[: n_classes // 2],
                           default_test=classes[n_classes // 2 :],
                           class_counts={c: per_class for c in classes})


def test_episodes_that_cannot_fit_a_split_file_are_refused_by_a_cost_estimate():
    """levels x episodes x sum(shots x usable test classes): 8 x 1000 x (2 + 5 + 10) x 1000
    = 136,000,000 paths > 10,000,000; the defaults on the same dataset pass, and shots a class
    cannot serve (fewer than shots + 1 images) add nothing."""
    big = fake_manifest(2000, 20)
    check_generation_cost(big, LadderConfig())
    with pytest.raises(ConfigError, match=r"episodes=1000 with shots=\[2, 5, 10\] on 1000 test "
                       r"classes and 8 levels would store up to 136,000,000 support image "
                       r"paths .* lower episodes, shots or levels"):
        check_generation_cost(big, LadderConfig(episodes=1000))
    check_generation_cost(fake_manifest(2000, 5), LadderConfig(episodes=1000, shots=(5, 10)))


# --- item 13: an address that is not Ray ------------------------------------------------------


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def http_server():
    """A loopback `python -m http.server` (the hostile input), stopped by the test."""
    server = HTTPServer(("127.0.0.1", 0), QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_web_server_at_the_ray_address_fails_in_one_line_within_seconds(http_server, scheme):
    """It accepts TCP, so the TCP probe passed and ray.init retried for 200 s (ray:// 35 s)."""
    from oodml.sweep.engine import Task
    from oodml.sweep.ray_backend import RayBackend, import_ray

    import_ray()
    address = scheme + http_server
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        RayBackend(address=address).run([Task("t", 1)], print, None, 0, print)
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert msg.startswith(f"--address {address} is not a Ray cluster: it answers HTTP/1 or HTML")
    assert "\n" not in msg


def test_a_sweep_refuses_a_web_server_address_before_any_status_line(study, tmp_path,
                                                                     http_server):
    """plan() probes the address, so the sweep prints no status line before the error (the
    CLI printed 'done 0 · running 0 ...' first when only the backend probed)."""
    from oodml.sweep.run import run_sweep

    cfg = tmp_path / "sweep.toml"
    cfg.write_text(f'splitfile = "{study.splitfile}"\nroot = "{study.root}"\nresults = "o"\n'
                   f'cache_dir = "{study.cache_dir}"\n[train]\nepochs = 1\nbatch_size = 12\n'
                   'm = 2\n[[methods]]\nloss = "contrastive"\n')
    updates = []
    with pytest.raises(ConfigError, match=f"--address {http_server} is not a Ray cluster"):
        run_sweep(load_config(cfg), SweepRun(backend="ray", address=http_server),
                  on_update=updates.append)
    assert updates == []


def test_a_silent_server_fails_at_the_handshake_deadline():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        address = f"127.0.0.1:{server.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(ConfigError, match="no answer to the gRPC handshake within 0.5 s"):
            probe_address(address, handshake=0.5)
        assert 0.4 < time.monotonic() - start < 5


def test_a_grpc_server_passes_only_with_ray_s_service():
    """A gRPC server without Ray's GCS service is refused (UNIMPLEMENTED); one that implements
    NodeInfoGcsService/GetClusterId passes the probe."""
    from concurrent import futures

    import grpc

    servers = []
    try:
        plain = grpc.server(futures.ThreadPoolExecutor(1))
        plain_port = plain.add_insecure_port("127.0.0.1:0")
        plain.start()
        servers.append(plain)
        with pytest.raises(ConfigError, match="does not implement /ray.rpc.NodeInfoGcsService"):
            probe_address(f"127.0.0.1:{plain_port}", handshake=5)
        gcs_like = grpc.server(futures.ThreadPoolExecutor(1), handlers=[
            grpc.method_handlers_generic_handler("ray.rpc.NodeInfoGcsService", {
                "GetClusterId": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"")})])
        gcs_port = gcs_like.add_insecure_port("127.0.0.1:0")
        gcs_like.start()
        servers.append(gcs_like)
        probe_address(f"127.0.0.1:{gcs_port}", handshake=5)
    finally:
        for s in servers:
            s.stop(0)


# --- unclear messages -------------------------------------------------------------------------


def test_non_finite_loss_and_miner_arguments_are_refused_up_front_naming_the_key():
    with pytest.raises(ConfigError, match=r"loss 'triplet' argument margin=inf is not a finite "
                       r"number"):
        resolve_loss_args("triplet", "margin=1e999")
    with pytest.raises(ConfigError, match="argument margin=-inf is not a finite number"):
        resolve_loss_args("triplet", {"margin": float("-inf")})
    with pytest.raises(ConfigError, match="argument margin=nan is not a finite number"):
        resolve_miner_args("triplet-semihard", {"margin": float("nan")})
    assert resolve_loss_args("triplet", "margin=0.2")["margin"] == 0.2


def test_margin_1e999_on_the_command_line_names_the_key(study, tmp_path, cli):
    code, _, err = cli(*train_args(study, tmp_path / "o", "--loss", "triplet",
                                           "--loss-args", "margin=1e999"))
    line = one_line_error(code, err)
    assert "margin=inf is not a finite number" in line and "adam" not in line


@pytest.mark.parametrize("text", [f"margin={BIG}", f"margin=-{BIG}.5", f"a=1,b={BIG}e3"])
def test_thousands_of_digits_in_key_value_options_are_too_long(text):
    with pytest.raises(ConfigError, match=r"the number 9{0,12}.*\.\.\. is \d+ characters long; "
                       r"numbers are at most 400 characters") as err:
        parse_kv(text, "loss argument")
    assert len(str(err.value)) < 200
    assert parse_kv("name=" + "x" * 5000)["name"] == "x" * 5000  # long text stays text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--loss-args", f"margin={BIG}"], "loss_args argument margin: the number "
                                           "999999999999... is 5000 characters long"),
        (["--seeds", BIG], "seeds: the number 999999999999... is 5000 characters long"),
        (["--gallery-draws", "9" * 400], "gallery_draws=<a number of about 400 digits> must be "
                                         "<= 1000"),
    ],
)
def test_thousands_of_digits_on_the_command_line_are_one_short_line(study, tmp_path, cli, args,
                                                                    needle):
    code, _, err = cli(*train_args(study, tmp_path / "o", *args))
    line = one_line_error(code, err)
    assert needle in line and "set_int_max_str_digits" not in line and len(line) < 300, line


def test_huge_integers_are_shown_by_length_in_field_errors():
    with pytest.raises(ConfigError, match=r"epochs=<a number of about 5000 digits> must be <= "):
        check_int("epochs", 10**5000 - 1, 0, 10)
    with pytest.raises(ConfigError, match=r"lr=<a number of about 401 digits> must be a finite"):
        TrainConfig(lr=10**400)


SWEEP = 'splitfile = "s.json"\nroot = "r"\nresults = "o"\n[[methods]]\nloss = "triplet"\n'


def test_a_sweep_toml_with_a_byte_order_mark_is_read(tmp_path):
    plain, bom = tmp_path / "plain.toml", tmp_path / "bom.toml"
    plain.write_text(SWEEP, encoding="utf-8")
    bom.write_text(SWEEP, encoding="utf-8-sig")
    assert bom.read_bytes().startswith(b"\xef\xbb\xbf")
    a, b = load_config(plain), load_config(bom)
    assert dataclasses.replace(a, source="") == dataclasses.replace(b, source="")


def test_a_sweep_toml_with_a_5000_digit_number_is_one_line(tmp_path):
    cfg = tmp_path / "big.toml"
    cfg.write_text(SWEEP.replace('results = "o"', f'results = "o"\nseeds = [{BIG}]'))
    with pytest.raises(ConfigError, match=f"sweep config {cfg} holds a number too long to read"):
        load_config(cfg)
    cfg.write_text(SWEEP + f"[train]\nepochs = {'9' * 400}\n")
    with pytest.raises(ConfigError, match=r"epochs=<a number of about 400 digits> must be <= "
                       r"10000"):
        load_config(cfg)
