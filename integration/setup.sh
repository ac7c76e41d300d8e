#!/usr/bin/env bash
# setup.sh installs what the integration tests need on a Debian 12 machine,
# as root, and does nothing when it is all there already:
#
#   - the clients, with apt-get: curl, lftp, python3 (ftplib is stdlib),
#     netkit's ftp-ssl (OpenSSL, ends data connections without
#     close_notify), wget and rclone, and chromium, which loads the admin
#     status page headless;
#   - Node's basic-ftp, with npm, pinned, into .cache/node at the
#     repository root (or FTPSGATE_NODE_DIR): nothing global changes;
#   - the FTP servers vsftpd, pure-ftpd and proftpd-core, fetched with
#     `apt-get download` and unpacked with `dpkg -x` into .cache/interop/NAME
#     at the repository root. Debian's FTP server packages conflict with each
#     other (each provides ftp-server), and installing one would start a
#     daemon on port 21; unpacked, they run only when a test starts them, on
#     loopback high ports, with the test's own configuration;
#   - the shared libraries those unpacked servers load, with apt-get.
#   - GNU inetutils ftpd (inetutils-ftpd), unpacked the same way, and socat,
#     which runs it as inetd would: a new ftpd for every connection, the
#     socket as its standard input and output.
#
# The tests find the servers under .cache/interop (or FTPSGATE_INTEROP_DIR).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${FTPSGATE_INTEROP_DIR:-$repo/.cache/interop}"
node_dir="${FTPSGATE_NODE_DIR:-$repo/.cache/node}"

# basic-ftp, the Node.js FTP client of TestMoreClients, at this exact
# version (6.x supports Node.js 10 and later).
basic_ftp_version=6.2.6

# Packages installed normally: the clients, and the libraries the unpacked
# servers link against (from the Depends of vsftpd, pure-ftpd and
# proftpd-core in Debian 12). libpam-modules brings pam_unix.so, which the
# vsftpd test's PAM service uses; passwd brings useradd and chpasswd;
# redis-server is the shared affinity store of the fleet tests (it does not
# conflict with anything, so it is installed, not unpacked; policy-rc.d
# keeps its service from starting); so is haproxy, the L4 balancer that
# the PROXY protocol test starts in front of the proxy with its own
# configuration. wget and rclone are clients of TestMoreClients.
packages=(
	curl lftp python3 passwd redis-server chromium haproxy ftp-ssl
	socat wget rclone
	libpam0g libpam-modules libpam-runtime
	libcap2 libssl3 libwrap0 libsodium23 libcrypt1 libacl1
	libhiredis0.14 libidn2-0 libmemcached11 libmemcachedutil2
	libncursesw6 libtinfo6 libpcre2-8-0 libpcre2-posix3 zlib1g
)

# Servers unpacked into the cache, and the binary that proves each is there.
declare -A servers=(
	[vsftpd]=usr/sbin/vsftpd
	[pure-ftpd]=usr/sbin/pure-ftpd
	[proftpd-core]=usr/sbin/proftpd
	[inetutils-ftpd]=usr/sbin/ftpd
)

say() { echo "setup.sh: $*"; }

if [ "$(id -u)" -ne 0 ]; then
	say "must run as root (apt-get install)" >&2
	exit 1
fi

updated=no
apt_update_once() {
	if [ "$updated" = no ]; then
		say "apt-get update"
		apt-get update -qq
		updated=yes
	fi
}

# A package whose maintainer script starts a service (lftp and curl don't,
# but their dependencies might) must not start it: policy-rc.d exiting 101
# tells invoke-rc.d "not now". Created only when absent, and only when
# something is about to be installed.
ensure_policy_rc_d() {
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		say "creating /usr/sbin/policy-rc.d (exit 101: no daemon starts during installs)"
		printf '#!/bin/sh\n# Created by ftpsgate integration/setup.sh: packages must not start daemons.\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
	fi
}

missing=()
for p in "${packages[@]}"; do
	if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	ensure_policy_rc_d
	apt_update_once
	say "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
	say "clients and libraries already installed: ${packages[*]}"
fi

mkdir -p "$cache"
for pkg in "${!servers[@]}"; do
	dest="$cache/$pkg"
	if [ -x "$dest/${servers[$pkg]}" ]; then
		say "$pkg already unpacked in $dest"
		continue
	fi
	apt_update_once
	work="$(mktemp -d)"
	# apt-get download drops privileges to _apt when it can write there.
	if id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
	say "apt-get download $pkg"
	(cd "$work" && apt-get download -qq "$pkg")
	rm -rf "$dest.tmp"
	dpkg -x "$work"/"$pkg"_*.deb "$dest.tmp"
	rm -rf "$dest" "$work"
	mv "$dest.tmp" "$dest"
	say "unpacked $pkg into $dest"
done

# Node.js and npm come with the machine (NodeSource's nodejs 20 has npm
# inside); only where they are missing are Debian's nodejs and npm
# installed. basic-ftp goes into node_dir, not into a global folder.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	ensure_policy_rc_d
	apt_update_once
	say "apt-get install nodejs npm"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ "$(node -p 'require(process.argv[1]).version' "$node_dir/node_modules/basic-ftp/package.json" 2>/dev/null)" = "$basic_ftp_version" ]; then
	say "basic-ftp $basic_ftp_version already installed in $node_dir"
else
	mkdir -p "$node_dir"
	say "npm install basic-ftp@$basic_ftp_version into $node_dir"
	npm install --prefix "$node_dir" --save-exact --no-audit --no-fund --loglevel=error "basic-ftp@$basic_ftp_version"
fi

# Every server must load: a missing library shows up here, not as a
# puzzling test failure.
status=0
for pkg in "${!servers[@]}"; do
	bin="$cache/$pkg/${servers[$pkg]}"
	if notfound="$(ldd "$bin" | grep 'not found')"; then
		say "$bin lacks libraries:" >&2
		echo "$notfound" >&2
		status=1
	fi
done
# unshare and mount (util-linux, essential in Debian) give each inetutils
# ftpd its own /etc (servers_test.go, configureInetutils).
for tool in curl lftp python3 chromium haproxy ftp-ssl socat unshare mount wget rclone node; do
	command -v "$tool" >/dev/null || { say "$tool is not on PATH" >&2; status=1; }
done
if [ $status -eq 0 ]; then
	say "ready: $(lftp --version | head -1); $(curl --version | head -1 | cut -d' ' -f1-2); $(python3 --version)"
	say "ready: $(wget --version | head -1 | cut -d' ' -f1-3); $(rclone version | head -1); node $(node --version), basic-ftp $basic_ftp_version"
fi
exit $status
