"""Layer 2, storage: backends over fsspec, chunk codecs, packs, recipes, the blob reader and
writer, the publish/gc handshake and the local cache (docs/architecture.md)."""
