"""Behavioural features and the IsolationForest detector."""

from pathlib import Path

from core.compiled import check_compiled

check_compiled(Path(__file__).parent)
