"""The HSM layer: the only code in zrkeyring that speaks PKCS#11."""
