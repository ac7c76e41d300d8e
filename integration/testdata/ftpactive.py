#!/usr/bin/env python3
"""ftpactive.py: one explicit-FTPS session with Python's ftplib in active
mode (PORT), for integration/active_test.go.

It logs in over AUTH TLS, sets PROT C or P, optionally clears the control
channel with CCC, uploads --up as --name, lists, downloads --name into --dl
and quits. ftplib's debug trace (every command, "*cmd* 'PORT ...'") goes
to stdout for the Go test to check; the test compares the files. On an
error it prints "FAIL: ERROR" and exits 1.

Data connections under PROT P resume the control connection's TLS session,
as servers that require session reuse demand, and print
"data-tls resumed=BOOL".
"""

import argparse
import ftplib
import ssl
import sys


class ActiveFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control TLS session."""

    def ntransfercmd(self, cmd, rest=None):
        # ftplib.FTP (not FTP_TLS): PORT, the command, the 1xx, accept; then
        # TLS as the client on the accepted socket (RFC 4217 section 7).
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.session
            )
            print("data-tls resumed=%s" % conn.session_reused, flush=True)
        return conn, size

    def ccc(self):
        # ftplib's ccc() unwraps the socket but keeps reading replies from
        # the TLS socket's file: read them from the plain one.
        self.session = self.sock.session
        resp = super().ccc()
        self.file = self.sock.makefile("r", encoding=self.encoding)
        return resp


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--prot", choices=["C", "P"], required=True)
    p.add_argument("--ccc", action="store_true", help="clear the control channel after PROT")
    p.add_argument("--up", required=True, help="local file to upload")
    p.add_argument("--name", required=True, help="remote name")
    p.add_argument("--dl", required=True, help="where the download goes")
    a = p.parse_args()

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    ftp = ActiveFTP_TLS(context=ctx, timeout=60)
    ftp.set_debuglevel(1)
    ftp.set_pasv(False)
    try:
        ftp.connect(a.host, a.port)
        ftp.auth()
        ftp.login(a.user, a.password)
        ftp.session = ftp.sock.session
        ftp.voidcmd("PBSZ 0")
        if a.prot == "P":
            ftp.prot_p()
        else:
            ftp.prot_c()
        if a.ccc:
            print(ftp.ccc(), flush=True)
            print("control-tls %s" % isinstance(ftp.sock, ssl.SSLSocket), flush=True)
        with open(a.up, "rb") as f:
            print(ftp.storbinary("STOR " + a.name, f), flush=True)
        print(ftp.retrlines("LIST"), flush=True)
        with open(a.dl, "wb") as f:
            print(ftp.retrbinary("RETR " + a.name, f.write), flush=True)
        print(ftp.quit(), flush=True)
    except Exception as e:
        print("FAIL: %s: %s" % (type(e).__name__, e), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
