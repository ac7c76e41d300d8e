// Package integration holds ftpsgate's end-to-end tests: the built binary,
// driven by real clients (curl, lftp, Python ftplib) in front of backends
// that range from the in-memory ftptest server to real vsftpd, pure-ftpd and
// ProFTPD.
//
// setup.sh (run by `make test`, idempotent) installs the clients and
// unpacks the servers into .cache/interop; the tests then run as root,
// each server on a loopback high port with its own configuration, user and
// logs in a temporary directory. TestMatrix runs every backend × client ×
// PROT C/P × PASV/EPSV; one cell runs alone with
//
//	go test ./integration -run 'TestMatrix/vsftpd/lftp/protP/epsv'
//
// A tool that is missing skips its tests, except under CI=true, where it
// fails them: CI must prove the whole matrix.
package integration
