"""Shared domain records, errors, settings and reference data for amlwatch."""

from pathlib import Path

from core.compiled import check_compiled

check_compiled(Path(__file__).parent)
