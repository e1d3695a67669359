"""What runs: one module per pipeline stage, plus the shared plumbing (config, data I/O,
validation, CLI)."""
