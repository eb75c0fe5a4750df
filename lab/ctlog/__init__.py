"""A local Certificate Transparency log (RFC 6962 and static-ct-api) with switchable faults."""
