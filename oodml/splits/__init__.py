"""Split ladders: procedures, selection, sub-splits/episodes, split files and ooDML pickles.

The stable entry points for other modules are re-exported here; the ladder walk itself lives in
``oodml.splits.ladder``.
"""

from oodml.splits.generate import LadderConfig, build_split, generate_splitfile, start_classes
from oodml.splits.ladder import params_from_mapping
from oodml.splits.oodml_pickle import export_oodml, import_oodml
from oodml.splits.procedures import GreedyParams, OodmlParams
from oodml.splits.splitfile import (
    SCHEMA,
    Split,
    SplitFile,
    load_splitfile,
    save_splitfile,
    verify,
)
from oodml.splits.subsplits import few_shot_episodes, paths_by_class, train_val_split

__all__ = [
    "SCHEMA",
    "GreedyParams",
    "LadderConfig",
    "OodmlParams",
    "Split",
    "SplitFile",
    "build_split",
    "export_oodml",
    "few_shot_episodes",
    "generate_splitfile",
    "import_oodml",
    "load_splitfile",
    "params_from_mapping",
    "paths_by_class",
    "save_splitfile",
    "start_classes",
    "train_val_split",
    "verify",
]
