"""Cache tests."""
