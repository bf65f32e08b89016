"""Threshold ECDSA on secp256k1 with DKLs23 (Doerner, Kondi, Lee, shelat: "Threshold ECDSA in Three
Rounds", ePrint 2023/765): any t of n, dishonest majority, OT-based multiplication, no Paillier.

Layers, bottom up (each a sans-IO piece; randomness is injected):

- `ot_base`  verified simplest OT (VSOT) over secp256k1: the 128 base OTs per ordered pair, at keygen;
- `ot_ext`   KOS15 OT extension with its GF(2^128) consistency check, vectorised with numpy;
- `mul`      the DKLs19 two-party vector multiplication (random-OT based, gadget encoding of Bob's
             input, per-row consistency check of Alice's correlation);
- `keyshare` the one object a party keeps (share, public data, pairwise OT seeds), sealed by the HSM;
- `keygen`   the generic Feldman DKG (appliance.mpc_party.protocols.dkg) composed with the pairwise OT setup;
             `refresh` is the same composition in zero-sharing mode;
- `sign`     DKLs23 signing: rounds 1-2 message-independent (a presignature), round 3 + combine;
- `local`    a one-process driver for tests, benchmarks and the demo.

See docs/protocols/dkls23.md for every step and check.
"""
