"""The results workflow: headless runs, sar captures, capacity search, reports."""
