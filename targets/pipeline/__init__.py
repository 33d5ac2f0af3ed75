"""Reference Open edX analytics pipeline: one consumer per backend, xAPI into ClickHouse."""
