"""What the tests share: one managed-process helper for every server a test starts (ftserve, PostgreSQL,
SeaweedFS, Ray), the port allocator, paths and data, and the waits on a job or a condition."""
