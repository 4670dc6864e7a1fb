"""Security, the lowest room (it imports nothing from runner/): masking, secret files, inbound
auth, outbound signing, keys."""
