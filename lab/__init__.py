"""A local lab for tests, demos and benchmarks: a private PKI, TLS servers and a DNS server.

Everything binds to 127.0.0.x with ephemeral ports, so parallel runs never collide and no
traffic leaves the machine.
"""
