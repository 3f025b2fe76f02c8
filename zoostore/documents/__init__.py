"""Layer 3, documents: store config, manifest, lockfile, project config, model descriptors.
Parsed once into frozen values (docs/architecture.md)."""
