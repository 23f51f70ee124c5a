"""Statistics of datasets: mergeable sketches and column profiles, computed in one streaming pass.

Below both the lifecycle (``analyze`` infers a schema from a profile) and
monitoring (drift compares profiles), so both can use it.
"""

from conveyor.profiling.profile import ColumnProfile, Profile, profile

__all__ = ["ColumnProfile", "Profile", "profile"]
