"""Layer 5, operations on a repository: publish, resolve/lock, sync, fetch, tags, catalog,
verify, gc. Destructive ones plan first, then execute (docs/architecture.md)."""
