"""Rules every controller and every party derive from chain data alone.

Key types and the protocol that serves each, session ids, attempts, signing quorums and the roster.
Both the controller and the party daemon import this package; it imports neither of them, so the two
sides agree by computing the same function of the same chain facts, never by asking each other.
"""
