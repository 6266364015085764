"""Helpers shared by test modules (imported as ``helpers.<module>``: tests/ is on sys.path)."""
