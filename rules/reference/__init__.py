"""Dated reference data (FATF lists, rates, holidays, watch list); see rules.reference_data."""
