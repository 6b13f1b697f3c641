"""ftserve adapters package."""
