"""Trace files shipped with netem (package data) and the seeded generator that makes them (`generate`)."""
