"""Shared state: keys, quotas, durable sessions and grants in memory or in Redis (I/O, not policy)."""
