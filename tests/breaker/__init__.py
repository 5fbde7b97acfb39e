"""Circuit breaker tests."""
