"""Samplers of pipeline health and the ClickHouse sink they write to."""
