#!/usr/bin/env python3
"""ftpabort.py: ABOR in the middle of downloads, with Python's ftplib, for
integration/abort_test.go.

Each round starts RETR of a large file, reads a little of it, and aborts
the way ftplib does over TLS (FTP_TLS.abort: ABOR in-band, then one reply
that must be 426, 225 or 226). After a 426 the ABOR's own 2xx must follow
(RFC 959 section 4.1.3). Then PWD must get its 257, proving the control
connection is still in step. A round prints "round N: REPLIES"; a failure
prints "FAIL round N: ERROR" and exits 1. The socket timeout turns a
missing reply into a failure instead of a hang.
"""

import argparse
import ftplib
import ssl
import sys


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """Data connections resume the control TLS session (see ftpclient.py)."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
        return conn, size


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--prot", choices=["C", "P"], required=True)
    p.add_argument("--file", required=True, help="a large file to start downloading")
    p.add_argument("--rounds", type=int, default=10)
    a = p.parse_args()

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ftp = ReusingFTP_TLS(context=ctx, timeout=20)
    rnd = "login"
    try:
        ftp.connect(a.host, a.port)
        ftp.auth()
        ftp.login(a.user, a.password)
        ftp.prot_p() if a.prot == "P" else ftp.prot_c()
        ftp.voidcmd("TYPE I")
        for rnd in range(1, a.rounds + 1):
            conn = ftp.transfercmd("RETR " + a.file)
            conn.recv(65536)
            replies = [ftp.abort()]
            conn.close()
            if replies[0].startswith("426"):
                replies.append(ftp.voidresp())
            pwd = ftp.sendcmd("PWD")
            if not pwd.startswith("257"):
                raise ftplib.error_reply("PWD after ABOR: " + pwd)
            print("round %d: %s" % (rnd, " | ".join(r.replace("\n", " / ") for r in replies)), flush=True)
        ftp.quit()
    except Exception as e:
        print("FAIL round %s: %s: %s" % (rnd, type(e).__name__, e), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
