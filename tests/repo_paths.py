"""Where tests find the repository's files, wherever in tests/ they live."""

from pathlib import Path

#: the repository root (recipes/, scripts/, benchmarks/)
REPO = Path(__file__).resolve().parents[1]
#: reference files made by scripts/reference/ (and key tables)
DATA = REPO / "tests" / "data"
