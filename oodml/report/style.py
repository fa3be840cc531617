"""Shared look of report figures: greyscale-safe colours, markers, metric labels.

Colours follow the Okabe-Ito palette ordered by lightness, and every series also gets its
own marker, so lines stay distinguishable when printed in greyscale.
"""

from __future__ import annotations

COLOURS = ("#000000", "#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7",
           "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
FEWSHOT_DASHES = ((0, (5, 2)), (0, (2, 1.5)), (0, (7, 2, 1.5, 2)), (0, (4, 1, 1, 1, 1, 1)))
DISTANCE_LABEL = "Fréchet distance, train vs test (squared feature units)"
GREY = "#9a9a9a"

_METRIC_NAMES = {
    "nmi": "NMI",
    "map@r": "mAP@R",
    "r_precision": "R-Precision",
    "map@1000": "mAP@1000",
    "map@1000-oodml": "mAP@1000 (ooDML study norm.)",
}


def metric_name(metric: str) -> str:
    """Display name of a metric; a size-controlled one (``recall@1/n35``) says on how many
    drawn test classes it was computed."""
    base, _, n = metric.partition("/n")
    if base.startswith("recall@"):
        name = "Recall@" + base.split("@", 1)[1]
    else:
        name = _METRIC_NAMES.get(base, base)
    if n.isdigit():
        return f"{name}, {n} test classes drawn"
    return name


def metric_label(metric: str) -> str:
    """Axis label for a retrieval metric; all are fractions in [0, 1]."""
    name = metric_name(metric)
    if "/n" in metric:
        return f"{name}\n(size-controlled; fraction, 0–1)"
    return f"{name} (fraction, 0–1)"


def style_for(index: int) -> tuple[str, str]:
    """(colour, marker) of the index-th method; cycles after 8 with shifted markers."""
    colour = COLOURS[index % len(COLOURS)]
    marker = MARKERS[(index + index // len(COLOURS)) % len(MARKERS)]
    return colour, marker



def distance_label(
    mode: str | None = None, extractor: str | None = None, *, lines: bool = False
) -> str:
    """Axis label of the split distance; names the distance mode and extractor when known.
    ``lines=True`` breaks it over three lines (for a y axis)."""
    if mode is None:
        return DISTANCE_LABEL
    of = f" of {extractor} features" if extractor else ""
    sep = "\n" if lines else " "
    return f"Fréchet distance,{sep}{mode}{of}{sep}(squared feature units)"
