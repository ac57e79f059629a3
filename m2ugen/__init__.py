"""m2ugen package."""
