"""Files: upload, list, retrieve, download and delete training data."""
