"""LLM serving: services, request streams, replica schedulers (continuous batching), routers.

spec.py validates the scenario's `services:` and `requests:`; cost.py prices iterations from the
performance model; replica.py is the iteration-level scheduler run in closed-form jumps; fleet.py
routes requests to replicas on a calendar; requests.py builds the request table. docs/serving.md.
"""
