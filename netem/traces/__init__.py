"""Trace files shipped with netem (package data) and the generator (seeded) that makes them (`generate`)."""
