"""Keeping data only as long as allowed: policy, legal holds, purges, schedule."""
