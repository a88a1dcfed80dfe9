"""`make bench`: what tracking costs, measured side by side in one run."""
