"""MPC protocols (sans-IO state machines) and the party daemon that runs them."""
