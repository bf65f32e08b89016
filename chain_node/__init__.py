"""A single-process Python chain node serving zrChain's gRPC API, for development, tests and the demo."""
