"""Client for zrChain's gRPC API: queries, transaction building and broadcasting."""
