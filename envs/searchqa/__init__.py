"""EarlyExp/SearchQA-v0: multi-hop search over a generated encyclopedia."""
