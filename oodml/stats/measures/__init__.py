"""Train/test shift measures: one module per measure, one interface
(:class:`~oodml.stats.measures.base.Measure`), one registry.

=============  ==========================================================================
``frechet``    Fréchet distance of Gaussians fitted to each side (default; bit for bit the
               distance ladders always used)
``kid``        unbiased MMD^2, cubic polynomial kernel, mean +- std over subsets (KID)
``fid-inf``    Fréchet distance extrapolated to infinitely many atoms (FID_inf)
``w2-classes`` exact 2-Wasserstein distance between the class clouds (POT)
=============  ==========================================================================

``get_measure("kid")`` returns the measure; an unknown name is a one-line
:class:`~oodml.errors.ConfigError` listing the known ones. ``parse_measures("kid,fid-inf")``
reads a comma-separated list.
"""

from __future__ import annotations

from oodml.errors import ConfigError
from oodml.registry import Registry
from oodml.stats.measures.base import Measure, MeasureValue
from oodml.stats.measures.fid_inf import FidInf
from oodml.stats.measures.frechet import Frechet
from oodml.stats.measures.kid import Kid
from oodml.stats.measures.w2_classes import W2Classes

__all__ = ["DEFAULT_MEASURE", "MEASURES", "Measure", "MeasureValue", "get_measure",
           "parse_measures"]

DEFAULT_MEASURE = "frechet"
MEASURES: Registry[type[Measure]] = Registry("measure")
for _cls in (Frechet, Kid, FidInf, W2Classes):
    MEASURES.add(_cls.name, _cls)


def get_measure(name: str) -> Measure:
    """A fresh instance of the measure called ``name`` (default settings)."""
    if not isinstance(name, str):
        raise ConfigError(f"measure {name!r} must be a name; choose one of: "
                          f"{', '.join(MEASURES.names())}")
    return MEASURES.get(name)()


def parse_measures(text: str) -> tuple[str, ...]:
    """Measure names from a comma-separated list (checked, duplicates dropped, order kept)."""
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if not names:
        raise ConfigError(f"--measure {text!r} names no measure; choose from: "
                          f"{', '.join(MEASURES.names())}")
    for n in names:
        MEASURES.get(n)
    return tuple(dict.fromkeys(names))
