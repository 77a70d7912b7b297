"""Shared domain records, errors, settings and reference data for amlwatch."""
