"""ftserve service package."""
