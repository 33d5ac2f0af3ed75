"""Reference LRS for `--pipeline-backend ralph`: Ralph (the LRS Open edX Aspects uses), fs backend."""
