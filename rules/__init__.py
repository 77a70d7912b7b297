"""Rule packs and their pure evaluators."""

from pathlib import Path

from core.compiled import check_compiled

check_compiled(Path(__file__).parent)
