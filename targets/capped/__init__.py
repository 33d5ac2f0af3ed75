"""An HTTP endpoint with a hard concurrency cap: the known limit the capacity search must find."""
