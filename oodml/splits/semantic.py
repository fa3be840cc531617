"""Semantic shift of a split: how many of its test classes belong to kinds unseen in training.

The second axis beside the Fréchet distance. For a split (train classes, test classes) and a
class :class:`~oodml.data.hierarchy.Hierarchy`:

* ``unseen_share``: the share of test classes whose superclass has no class in train (0: every
  test class has a sibling in train; 1: the test superclasses are disjoint from the train ones,
  BREEDS' "bad" split);
* ``tree_distance`` (only for a hierarchy deeper than superclasses): the mean over test classes
  of the tree distance to the nearest train class (2: a sibling is in train; 2 (depth + 1):
  nothing in train shares even the top-level ancestor).

Both are functions of class names only, so they never change with the features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from oodml.data.hierarchy import Hierarchy
from oodml.errors import ConfigError, short

SEMANTIC_ORDERED = ("hierarchy", "ssb")
"""Procedures whose ladders are ordered by semantic level, not by distance."""


def semantic_shift(hierarchy: Hierarchy, train: Sequence[str], test: Sequence[str]
                   ) -> dict[str, float]:
    """``{"unseen_share": ..., ["tree_distance": ...]}`` of the split (module docstring)."""
    unknown = [c for c in (*train, *test) if c not in hierarchy.ancestors]
    if unknown:
        raise ConfigError(f"class {short(unknown[0])} has no superclass in the hierarchy "
                          f"({hierarchy.source}); give every class one")
    if not test or not train:
        raise ConfigError("semantic shift needs train and test classes")
    seen = {hierarchy.superclass(c) for c in train}
    unseen = sum(hierarchy.superclass(c) not in seen for c in test)
    out = {"unseen_share": unseen / len(test)}
    if hierarchy.depth > 1:
        per_level = [{hierarchy.ancestors[c][lv] for c in train} for lv in range(hierarchy.depth)]
        total = 0
        for c in test:
            anc = hierarchy.ancestors[c]
            level = next((lv for lv in range(hierarchy.depth) if anc[lv] in per_level[lv]),
                         hierarchy.depth)
            total += 2 * (level + 1)
        out["tree_distance"] = total / len(test)
    return out


def with_semantic(splitfile: Any, hierarchy: Hierarchy) -> Any:
    """A copy of ``splitfile`` whose splits carry their semantic shift and which records the
    hierarchy it was measured with."""
    ladder = [replace(s, semantic=semantic_shift(hierarchy, s.train, s.test))
              for s in splitfile.ladder]
    return replace(splitfile, ladder=ladder, hierarchy=hierarchy.record())


def semantic_columns(splitfile: Any) -> list[str]:
    """The semantic figures the splits of ``splitfile`` carry (for tables), in a fixed order."""
    keys: set[str] = set()
    for s in splitfile.ladder:
        keys.update(s.semantic or {})
    return [k for k in ("unseen_share", "tree_distance") if k in keys]
