// Package ftptest runs an in-memory plain FTP server (no TLS) for tests and
// for `ftpsgate demo`, in the way net/http/httptest runs HTTP servers.
//
// The server behaves like a strict real one (vsftpd is the model), because
// the proxy is tested against it: it needs a login, replies with the codes
// of RFC 959, 2389, 2428 and 3659, moves data byte-exact in both directions,
// accepts a passive data connection that arrives before the transfer command,
// refuses one from another IP than the control connection, opens the data
// connection before it replies 150 (unless ReplyBeforeData is set), closes
// the data connection before the final reply, keeps reading the control
// connection during a transfer so that ABOR works (426, then 226), and
// records every command line it receives.
//
//	srv := ftptest.NewServer() // user "test", password "test"
//	defer srv.Close()
//	srv.FS.WriteFile("/pub/hello.txt", []byte("hello\n"))
//	c, err := ftp.Dial(srv.Addr())
//	...
//	if got := srv.Commands(); ... // what reached the backend
//
// Nothing outlives Close: every session, transfer and listener is closed and
// waited for.
package ftptest
