"""Custom inter-annotator agreement metrics for Label Studio, on AWS Lambda or on one machine."""

__version__ = "0.1.0"
