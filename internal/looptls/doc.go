// Package looptls serves TLS clients on event loops (internal/eventloop):
// the gateway's loop engine and the agent's check ports build on it.
//
// The handshake runs on a goroutine, on Go's poller, over a Conn (Wrap:
// certs.Reloader.WrappedListener builds each *tls.Conn on one), so that
// a slow client holds no loop up and its errors stay the tls.Conn's.
// Once it is done the server takes the socket from under the Conn
// (Detach: a duplicate of its descriptor, non-blocking; the one Go's
// poller had is closed) and a loop owns it. The *tls.Conn then reads and
// writes the loop's buffers through the Conn: the loop reads the socket
// once a readiness event and has the tls.Conn decrypt every record that
// came (TLS.Read; the Conn's Read returns "would block", a temporary
// net.Error that tls.Conn does not keep, when it holds no ciphertext);
// what the tls.Conn writes (answers, and what a read may make it send,
// such as the reply to a TLS 1.3 KeyUpdate) is appended to a buffer the
// loop writes to the socket (TLS.Write, TLS.Flush), waiting there, in
// order, while the client does not take it.
//
// A loop's Buffers are shared by its connections: a connection holds a
// read buffer only for ciphertext not yet decrypted, and a write buffer
// only while its client has not taken what was written. A connection a
// loop hands back to a goroutine goes with its tls.Conn (TLS.Resume): it
// reads and writes a blocking connection over the socket again, the
// ciphertext read and not yet decrypted first.
//
// Everything here but Wrap is Linux only, as the loops are; elsewhere
// Wrap returns the connection as it is.
package looptls
