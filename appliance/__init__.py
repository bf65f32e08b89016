"""zrkeyring appliance: the HSM layer, the MPC party daemon and the chain controller."""

__version__ = "0.1.0"
