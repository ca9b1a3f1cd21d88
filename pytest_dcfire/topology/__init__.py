"""The description of the system under test: model, loading, planning (pure, no Docker)."""
