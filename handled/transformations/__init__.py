"""Transformations: registry, SQL, build-and-swap runner, run history, CLI and pages."""
