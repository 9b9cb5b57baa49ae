"""Optimisers above sweeps: the cheapest purchase that keeps a service level (capsim plan)."""
