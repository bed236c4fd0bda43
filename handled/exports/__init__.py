"""Exports: JSON and CSV files streamed out of the reference tables."""
