"""Security, the lowest room: masking, secret files, inbound auth, signing, keys; no runner/."""
