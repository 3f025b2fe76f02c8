"""Layer 1, vocabulary: digests, semver, names and paths, errors, units, progress, atomic writes,
versioned TOML. No store I/O; imports nothing above it (docs/architecture.md)."""
