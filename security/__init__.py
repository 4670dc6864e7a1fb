"""Security primitives: masking of secrets, reading secret files (auth and signing come later)."""
