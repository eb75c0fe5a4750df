"""A local RDAP server (RFC 9083 domain objects) with fault switches, for tests and demos."""
