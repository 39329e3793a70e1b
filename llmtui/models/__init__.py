"""Models on disk: names, the content-addressed store, the catalog and pulling."""
