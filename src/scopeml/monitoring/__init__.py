"""Monitoring: reference data, label ingestion, NannyML performance estimation and drift, simulation."""
