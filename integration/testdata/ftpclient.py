#!/usr/bin/env python3
"""ftpclient.py: one explicit-FTPS session with Python's ftplib, for the
interop matrix (integration/matrix_test.go).

It performs the scenario's steps in order and prints, for each one, a line
"### step NAME" followed by what the server answered or what was listed. The
Go test checks that output and the files; this script judges nothing beyond
"the library raised". On the first error it prints "FAIL step NAME: ERROR"
and exits 1, so a failure names its step.

Data connections under PROT P resume the control connection's TLS session
(session=self.sock.session), as servers that require session reuse demand;
each one prints "data-tls resumed=BOOL version=VERSION".
"""

import argparse
import ftplib
import ssl
import sys


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control TLS session, and
    which asks for passive ports with EPSV or PASV as told (ftplib on IPv4
    would always use PASV)."""

    def __init__(self, *args, epsv=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_epsv = epsv

    def makepasv(self):
        if self.use_epsv:
            host, port = ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())
            return host, port
        return super().makepasv()

    def ntransfercmd(self, cmd, rest=None):
        # ftplib.FTP (not FTP_TLS): connect, send cmd, read the 1xx; then
        # start TLS here ourselves with the control connection's session.
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
            print("data-tls resumed=%s version=%s" % (conn.session_reused, conn.version()))
        return conn, size


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--prot", choices=["C", "P"], required=True)
    p.add_argument("--mode", choices=["pasv", "epsv"], required=True)
    p.add_argument("--dir", required=True, help="directory to create and work in")
    p.add_argument("--up", required=True, help="file to upload as file.bin")
    p.add_argument("--part1", required=True, help="first part of appe.bin (STOR)")
    p.add_argument("--part2", required=True, help="second part of appe.bin (APPE)")
    p.add_argument("--dl", required=True, help="where RETR file.bin goes")
    p.add_argument("--rest-out", required=True, help="where RETR file.bin from --rest-offset goes")
    p.add_argument("--rest-offset", type=int, required=True)
    p.add_argument("--mlsd", action="store_true", help="the backend has MLSD")
    a = p.parse_args()

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    ftp = ReusingFTP_TLS(context=ctx, timeout=60, epsv=(a.mode == "epsv"))
    # Level 1 prints every command ("*cmd* 'RETR file.bin'", PASS masked)
    # and reply: the protocol trace the Go test checks.
    ftp.set_debuglevel(1)
    step = "login"

    def begin(name):
        nonlocal step
        step = name
        print("### step " + name, flush=True)

    def say(text):
        print(text, flush=True)

    try:
        begin("login")
        say(ftp.connect(a.host, a.port))
        say(ftp.auth())
        say(ftp.login(a.user, a.password))
        ftp.voidcmd("PBSZ 0")
        if a.prot == "P":
            say(ftp.prot_p())
        else:
            say(ftp.prot_c())

        begin("pwd")
        say(ftp.sendcmd("PWD"))

        begin("mkd")
        say(ftp.sendcmd("MKD " + a.dir))

        begin("cwd")
        say(ftp.sendcmd("CWD " + a.dir))
        say(ftp.sendcmd("PWD"))

        begin("stor")
        with open(a.up, "rb") as f:
            say(ftp.storbinary("STOR file.bin", f))

        begin("list")
        say(ftp.retrlines("LIST", say))

        if a.mlsd:
            begin("mlsd")
            for name, facts in ftp.mlsd(facts=["type", "size"]):
                say("%s %s" % (name, ";".join("%s=%s" % kv for kv in sorted(facts.items()))))

        begin("nlst")
        for name in ftp.nlst():
            say(name)

        begin("retr")
        with open(a.dl, "wb") as f:
            say(ftp.retrbinary("RETR file.bin", f.write))

        begin("rest")
        with open(a.rest_out, "wb") as f:
            say(ftp.retrbinary("RETR file.bin", f.write, rest=a.rest_offset))

        begin("size")
        ftp.voidcmd("TYPE I")  # ProFTPD refuses SIZE in ASCII mode
        say(ftp.sendcmd("SIZE file.bin"))

        begin("mdtm")
        say(ftp.sendcmd("MDTM file.bin"))

        begin("appe")
        with open(a.part1, "rb") as f:
            say(ftp.storbinary("STOR appe.bin", f))
        with open(a.part2, "rb") as f:
            say(ftp.storbinary("APPE appe.bin", f))

        begin("rename")
        say(ftp.rename("appe.bin", "renamed.bin"))

        begin("dele")
        say(ftp.delete("file.bin"))

        begin("mkd-rmd")
        say(ftp.sendcmd("MKD sub"))
        say(ftp.sendcmd("RMD sub"))

        begin("quit")
        say(ftp.quit())
    except Exception as e:  # any failure, named by its step
        print("FAIL step %s: %s: %s" % (step, type(e).__name__, e), flush=True)
        return 1
    print("### done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
