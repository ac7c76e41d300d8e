#!/usr/bin/env python3
"""ftpscript.py: what a script author writes with Python's ftplib, for the
tests of data-connection session reuse (integration/attack_test.go).

It logs in over AUTH TLS, sets PROT P, uploads --up as --name and
downloads it back into --dl, in passive mode (ftplib's PASV on IPv4 and
EPSV on IPv6, or as --epsv and --pasv say). With --stock it uses ftplib.FTP_TLS as it comes, whose data
connections never resume the control connection's TLS session; without,
ResumingFTP_TLS: the few lines README.md gives script authors. Each step
prints one line; an error prints "FAIL: ERROR" and exits 1.
"""

import argparse
import ftplib
import ssl
import sys
import time


# README.md, "Scripts": these lines are the ones it shows.
class ResumingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS
    session, as ftpsgate (and vsftpd's require_ssl_reuse) ask."""

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
    p.add_argument("--up", required=True, help="local file to upload")
    p.add_argument("--name", required=True, help="remote name")
    p.add_argument("--dl", required=True, help="where the download goes")
    p.add_argument("--epsv", action="store_true", help="EPSV, also on IPv4")
    p.add_argument("--pasv", action="store_true", help="PASV, also on IPv6 (as old clients do)")
    p.add_argument("--stock", action="store_true", help="ftplib.FTP_TLS as it comes")
    p.add_argument(
        "--no-close-notify",
        action="store_true",
        help="end each data connection by closing its socket, as OpenSSL clients such as "
        "netkit ftp-ssl do: no close_notify, and nothing read on an upload",
    )
    a = p.parse_args()

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    cls = ftplib.FTP_TLS if a.stock else ResumingFTP_TLS
    ftp = cls(context=ctx, timeout=60)
    began = time.monotonic()
    try:
        ftp.connect(a.host, a.port)
        ftp.auth()
        ftp.login(a.user, a.password)
        ftp.prot_p()
        if a.epsv:
            # ftplib uses EPSV on IPv6 only; ask for it on IPv4 too.
            ftp.makepasv = lambda: ftplib.parse229(ftp.sendcmd("EPSV"), ftp.sock.getpeername())
        if a.pasv:
            # And PASV on IPv6: the data connection goes to the IPv4
            # address the 227 names.
            ftp.makepasv = lambda: ftplib.parse227(ftp.sendcmd("PASV"))
        if a.no_close_notify:
            ftp.voidcmd("TYPE I")
            with open(a.up, "rb") as f:
                conn = ftp.transfercmd("STOR " + a.name)
                conn.sendall(f.read())
                conn.close()  # no unwrap(): no close_notify, nothing read
            print(ftp.voidresp(), flush=True)
            with open(a.dl, "wb") as f:
                conn = ftp.transfercmd("RETR " + a.name)
                while True:
                    try:
                        data = conn.recv(65536)
                    except ssl.SSLZeroReturnError:
                        break
                    if not data:
                        break
                    f.write(data)
                conn.close()
            print(ftp.voidresp(), flush=True)
        else:
            with open(a.up, "rb") as f:
                print(ftp.storbinary("STOR " + a.name, f), flush=True)
            with open(a.dl, "wb") as f:
                print(ftp.retrbinary("RETR " + a.name, f.write), flush=True)
        print(ftp.quit(), flush=True)
    except Exception as e:
        print("FAIL: %s: %s" % (type(e).__name__, e), flush=True)
        print("after %.1f s" % (time.monotonic() - began), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
