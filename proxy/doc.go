// Package proxy is ftpsgate's FTPS front end: the listeners, the per-session
// control state machine, the backends, and the data channel.
//
// A session terminates TLS from the client (explicit AUTH TLS or implicit
// TLS), answers the security commands itself (AUTH, PBSZ, PROT), dials a plain
// FTP backend at USER, and relays everything else in lockstep, rewriting
// PASV/EPSV and PORT/EPRT so that data connections pass through the proxy
// too, each half (client, backend) in passive or active mode:
//
//	srv, err := proxy.New(proxy.Config{
//		Listen:    ":21",
//		Implicit:  ":990",
//		Backends:  []proxy.Backend{{Address: "10.0.0.5:21"}},
//		TLSConfig: tlsConfig, // from tlsoffload
//		Logger:    logger,
//	})
//	if err != nil { ... }
//	if err := srv.Listen(); err != nil { ... }
//	err = srv.Serve(ctx) // returns when ctx is done and every session has ended
package proxy
