"""ftserve trainer package."""
