"""Test fixtures the tests, benchmarks and evaluation share: synthetic DNG files."""
