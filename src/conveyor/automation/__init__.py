"""Continuous training: triggers and the agent that closes the loop.

The agent evaluates triggers (schedule, new data, monitor alerts, manual),
runs pipelines and moves models by their deployment policy; leases in the
metadata store keep two agents from doing the same work twice.
"""
