"""Test infrastructure shared by every test directory: private servers and helpers."""
