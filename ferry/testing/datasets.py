"""Where tests and benches find the shared datasets: `$FERRY_DATASETS`, else `../shared/datasets`
beside the repository, never an absolute path of one machine.

The datasets are read in place, never copied into the repository. loghub's notice (LICENSE beside
the data) asks that any copy carry it:
  The datasets are freely available for research or academic work, subject to the following
  condition: For any usage or distribution of the loghub datasets, please refer to the loghub
  repository URL (https://github.com/logpai/loghub) and cite the following loghub paper where
  applicable. Jieming Zhu, Shilin He, Pinjia He, Jinyang Liu, Michael R. Lyu. Loghub: A Large
  Collection of System Log Datasets for AI-driven Log Analytics. In ISSRE, 2023.
  The above license notice shall be included in all copies of the datasets.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV", "dataset", "loghub"]

ENV = "FERRY_DATASETS"
# ferry/testing/datasets.py -> the repository root; CI and every developer machine lay the shared
# folder beside the clone (`<parent>/main`, `<parent>/shared`).
_BESIDE_REPO = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def _roots() -> list[Path]:
    """The places looked in, in order: the operator's choice first, then the shared folder."""
    env = os.environ.get(ENV, "").strip()
    return ([Path(env)] if env else []) + [_BESIDE_REPO]


def dataset(relative: str) -> Path:
    """The path of `relative` under the first datasets root that holds it.

    A missing dataset is an error, never a reason to skip: a test that silently stops testing
    passes in CI for the wrong reason. The message names every place looked.
    """
    for root in _roots():
        path = root / relative
        if path.exists():
            return path
    looked = [f"${ENV}/{relative} (${ENV} is not set)"] if not os.environ.get(ENV, "").strip() else []
    looked += [str(root / relative) for root in _roots()]
    raise FileNotFoundError(
        f"dataset {relative!r} not found; looked in: {'; '.join(looked)}. "
        f"Set {ENV} to the folder that holds it, or lay the shared folder beside the repository."
    )


def loghub(name: str = "") -> Path:
    """A loghub system folder (`loghub("Linux")`), a file in one (`loghub("Linux/Linux_2k.log")`),
    or, with no name, the loghub folder itself."""
    return dataset(f"loghub/{name}" if name else "loghub")
