"""Pure protocol code: no Django and no KeyChest app imports (import-linter enforces it).

TLS probe, STARTTLS, X.509 parsing, CT leaf format, Merkle hashing, names, address safety
(netguard), HSTS probe, chain validation, targets, the renewal rule and the per-address checks.
Testable and benchmarkable alone; the agent imports it without Django.
"""
