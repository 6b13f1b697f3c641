"""The dashboard at /ui: static pages that use only the public HTTP API."""
