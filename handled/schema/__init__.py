"""Schema tooling: yoyo migrations per side, what each migration creates, catalog and drift, `flask db check`."""
