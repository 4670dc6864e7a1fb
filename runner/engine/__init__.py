"""The engine: locks, runs and their records, tool processes, history; no HTTP, CLI or delivery."""
