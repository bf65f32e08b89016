"""The pure protocols: sans-IO state machines (messages in, messages out).

Nothing in this package does I/O, keeps time, starts threads or reads global randomness: every session
takes its randomness as an `Rng` argument and returns the bytes it wants sent. The party daemon
(`appliance.mpc_party`) wraps them with transport, storage, the HSM and deadlines. A test runs this
package with grpc, pkcs11 and sqlite3 unimportable (tests/test_layers.py).
"""
