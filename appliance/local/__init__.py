"""The keyring on one machine: the local chain node, parties and controllers (localnet), the end-to-end
demo and the quick component demos. Used by `zrkeyring demo`, the e2e tests and the e2e bench."""
