"""Scenario files: the `.mock` and YAML front ends, the IR, its schema and checks, loading
and writing files."""
