"""The runtime inside every metric function: loads the user's metric.py and scores batches of annotation pairs."""
