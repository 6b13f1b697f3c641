"""The Batch API: many chat or completion requests in one file, run on the shared engine."""
