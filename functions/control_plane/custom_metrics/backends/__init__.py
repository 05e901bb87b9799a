"""Backends that store and run metric functions: local (one machine) and AWS Lambda."""
