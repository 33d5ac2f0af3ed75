"""Reference stream processor for the Kafka end-to-end latency tests."""
