// Package ftpctl is the FTP control protocol as pure functions and small types:
// reading command lines and (multi-line) replies with a mandatory line limit,
// formatting replies, and parsing and formatting the address arguments of PASV
// (227), EPSV (229), PORT and EPRT, and FEAT lists.
//
// It never dials, listens, logs or starts goroutines, so every parser can be
// fuzzed on its own.
//
//	r := ftpctl.NewReader(bufio.NewReader(conn), 0)
//	reply, err := r.ReadReply()
//	if err != nil { ... }
//	if reply.Code != ftpctl.CodeEnteringPassive { ... }
//	addr, err := ftpctl.ParsePASV(reply.Text())
package ftpctl
