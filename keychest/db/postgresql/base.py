"""Django's PostgreSQL backend, with a health check that asks the socket before the server.

With `CONN_HEALTH_CHECKS`, Django calls `is_usable()` before the first query of every request
that reuses a persistent connection, and Django's PostgreSQL backend answers it with a
`SELECT 1`: a full round trip (send, server parse and run, wake-up on the answer) on every
request. On the API's path, which otherwise sends one prepared statement per request, that round
trip showed in the throughput (bench/README.md, "API": 0.416 of the bare view with it, 0.466
without, measured back to back).

Here the check first polls the connection's socket, with zero timeout, for something to read.
Between requests an idle connection has nothing to read: the server sends nothing unasked once
it has answered. Every way the server ends a session puts something there:

- `pg_terminate_backend()`, a shutdown or restart, `idle_session_timeout`: a FATAL error
  message, then the close (FIN);
- a crashed backend or server, a pooler or proxy closing its side: FIN or RST;
- over TLS, a `close_notify` record before the FIN.

The poll reports any of these (data, end of file, reset, hang-up), and then the check is the
real `SELECT 1`, which reads them and fails. Something readable on a healthy connection (a
notice, a notification, a parameter status after a configuration reload) takes the same path
and passes. So the answer is `SELECT 1`'s own whenever the server has said anything; the only
difference is that a quiet, idle connection is taken as usable without asking.

That is no weaker than the `SELECT 1`:
- a peer that vanished without a word (power cut, cable, a firewall dropping the flow) leaves the
  socket quiet, so the poll answers "usable", and the request's query hangs until TCP gives up;
  a `SELECT 1` sent to the same peer hangs in the same place, a few microseconds earlier;
- a close that happens after the check fails the request's query, as it would after a `SELECT 1`
  that ran just before the close;
- a close ends in end of file on the socket, which stays readable until the connection is
  closed, even if libpq or OpenSSL already read the FATAL message into their buffers.

Where the poll does not settle it, the real check runs: a connection that saw an error since its
last commit or rollback (`errors_occurred`, set by Django for anything but DataError and
IntegrityError), or whose transaction status is not idle (inside a transaction, aborted, or
unknown to libpq). A connection the driver knows is closed is unusable without asking.

Cost: one `poll()` system call (a microsecond or two) instead of a round trip. `select.poll`
rather than `select.select`, whose descriptor sets end at 1024; where the platform has no
`poll` (Windows), every check is the `SELECT 1`.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLDatabaseWrapper

# libpq's PQTRANS_IDLE: connected and not in a transaction block. psycopg2
# (`connection.info.transaction_status`, TRANSACTION_STATUS_IDLE) and psycopg 3
# (`pq.TransactionStatus.IDLE`, an IntEnum) both report libpq's numbers.
PQTRANS_IDLE = 0


class DatabaseWrapper(PostgreSQLDatabaseWrapper):
    """PostgreSQL, with `is_usable()` answered from the socket while the connection is quiet."""

    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed:
            return False
        if self.errors_occurred or conn.info.transaction_status != PQTRANS_IDLE or not hasattr(select, "poll"):
            return super().is_usable()
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        if poller.poll(0):
            # Data, end of file, reset or hang-up (poll reports the last three whatever was
            # asked for): let the server's answer to SELECT 1 decide.
            return super().is_usable()
        return True
