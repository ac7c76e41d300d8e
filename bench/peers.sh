#!/usr/bin/env bash
# peers.sh runs the same load against ftpsgate and against ProFTPD 1.3.8 +
# mod_proxy (reverse, mod_tls frontend), both in front of one plain vsftpd,
# and prints a table of figures and ratios (make bench-peers). As root, on
# Debian 12, on loopback ports 25021-27999, holding the integration lock
# (vsftpd's test account and PAM service are the integration tests').
#
#   - bulk transfers with curl (PROT P and PROT C, download and upload of
#     SIZE_MIB), with the CPU seconds per GiB of each proxy's process tree
#     (utime+stime, and cutime+cstime for children already reaped), the
#     median of ROUNDS rounds;
#   - session setup latency and sessions/s with 8 clients, CPU ms per
#     session, and files/s of 4 KiB over one session: `ftpsgate bench`;
#   - memory per idle logged-in session: PSS summed over the proxy's
#     process tree (/proc/PID/smaps_rollup) with `ftpsgate bench --idle`;
#     and for ftpsgate again at IDLE_MAX sessions, or as many as the
#     descriptor limit allows (two per session), in front of an in-memory
#     backend (bench/membackend): vsftpd forks two processes per session.
#
# vsftpd's own FTPS (a second instance, TLS on) is measured for session
# setup, as the reference the issue's target names, and for 4 KiB files,
# as what the backend gives without a proxy. `ftpsgate bench`
# offers X25519 and P-256, as curl and other OpenSSL 3.0 clients do (and
# vsftpd 3.0.3 knows only P-256): Go's default adds a post-quantum hybrid
# that ProFTPD cannot negotiate, which would make ftpsgate's handshakes
# alone the more expensive.
#
# Environment: SIZE_MIB (1024), DURATION (10s), IDLE_FTPSGATE (1000),
# IDLE_PROFTPD (200), IDLE_MAX (10000), ROUNDS (3) of bulk transfers.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="$repo/.cache/peers"
interop="${FTPSGATE_INTEROP_DIR:-$repo/.cache/interop}"
run="$cache/run"
SIZE_MIB="${SIZE_MIB:-1024}"
DURATION="${DURATION:-10s}"
IDLE_FTPSGATE="${IDLE_FTPSGATE:-1000}"
IDLE_PROFTPD="${IDLE_PROFTPD:-200}"
IDLE_MAX="${IDLE_MAX:-10000}"
ROUNDS="${ROUNDS:-3}"

user=ftpsgate-test
password=interop-pw-4217
pam_service=ftpsgate-test-vsftpd
vsftpd_port=25021 vsftpd_tls_port=25022 ftpsgate_port=25121 proftpd_port=25221
ftpsgate_max_port=25131 membackend_port=25321

say() { echo "peers.sh: $*" >&2; }

[ "$(id -u)" -eq 0 ] || { say "must run as root"; exit 1; }
if [ -z "${FTPSGATE_PEERS_LOCKED:-}" ]; then
	# One vsftpd at a time on this machine: the integration tests' lock.
	exec env FTPSGATE_PEERS_LOCKED=1 flock /tmp/ftpsgate-integration.lock "$0" "$@"
fi

# --- what runs: vsftpd (setup.sh), ProFTPD with mod_proxy and mod_tls ---
bash "$repo/integration/setup.sh" >/dev/null
if [ ! -e "$cache/proftpd/usr/lib/proftpd/mod_proxy.so" ] || [ ! -e "$cache/proftpd/usr/lib/proftpd/mod_tls.so" ]; then
	work="$(mktemp -d)"
	if id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
	# proftpd-mod-crypto (mod_tls) must match proftpd-core exactly.
	version="$(apt-cache policy proftpd-mod-crypto | awk '/Candidate:/ {print $2}')"
	say "apt-get download proftpd-core proftpd-mod-crypto $version, proftpd-mod-proxy"
	(cd "$work" && apt-get download -qq "proftpd-core=$version" "proftpd-mod-crypto=$version" proftpd-mod-proxy)
	rm -rf "$cache/proftpd.tmp"
	for deb in "$work"/*.deb; do dpkg -x "$deb" "$cache/proftpd.tmp"; done
	rm -rf "$cache/proftpd" "$work"
	mv "$cache/proftpd.tmp" "$cache/proftpd"
fi
for lib in libsqlite3-0 libssl3 libsodium23; do
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$lib" 2>/dev/null)" = installed ] ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$lib" >/dev/null
done
say "go build"
(cd "$repo" && go build -o "$cache/ftpsgate" ./cmd/ftpsgate && go build -o "$cache/membackend" ./bench/membackend)
ftpsgate="$cache/ftpsgate"

# The integration tests' account: SHA-256 crypt with 1000 rounds, so a
# login costs vsftpd well under a millisecond (yescrypt's 40 ms would hide
# the proxies' own cost), and a PAM service of pam_unix alone.
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin "$user"
echo "$user:$password" | chpasswd --crypt-method SHA256 --sha-rounds 1000
printf 'auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_permit.so\n' >"/etc/pam.d/$pam_service"

rm -rf "$run"
mkdir -p "$run/home" "$run/empty" "$run/proxy-tables"
chown "$user:$user" "$run/home" "$run/proxy-tables"
echo "$password" >"$run/password"
head -c "${SIZE_MIB}M" /dev/zero >"$run/home/big.bin"
cp "$run/home/big.bin" "$run/upload.bin"
chown "$user:$user" "$run/home/big.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
	-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null
chmod 644 "$run/key.pem"

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" # one idle session holds several descriptors

vsftpd_conf() { # port pasv_low pasv_high extra...
	local port=$1 low=$2 high=$3
	shift 3
	cat <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
pam_service_name=$pam_service
local_root=$run/home
chroot_local_user=YES
allow_writeable_chroot=YES
secure_chroot_dir=$run/empty
pasv_enable=YES
pasv_min_port=$low
pasv_max_port=$high
max_clients=5000
max_per_ip=5000
syslog_enable=NO
xferlog_enable=NO
EOF
	printf '%s\n' "$@"
}
vsftpd_conf $vsftpd_port 25100 25499 >"$run/vsftpd.conf"
vsftpd_conf $vsftpd_tls_port 25500 25899 ssl_enable=YES "rsa_cert_file=$run/cert.pem" \
	"rsa_private_key_file=$run/key.pem" force_local_logins_ssl=YES force_local_data_ssl=NO \
	require_ssl_reuse=NO ssl_ciphers=HIGH ssl_tlsv1=YES ssl_sslv2=NO ssl_sslv3=NO >"$run/vsftpd-tls.conf"
"$interop/vsftpd/usr/sbin/vsftpd" "$run/vsftpd.conf" </dev/null >"$run/vsftpd.out" 2>&1 &
pids+=($!)
"$interop/vsftpd/usr/sbin/vsftpd" "$run/vsftpd-tls.conf" </dev/null >"$run/vsftpd-tls.out" 2>&1 &
pids+=($!)

# The load comes from one address and stands for many clients: the
# per-address limits, which would rightly hold it back, are lifted (and
# so is max_sessions, for IDLE_MAX). Data connections resume, as the
# bench client's do: the default.
cat >"$run/ftpsgate.toml" <<'TOML'
[limits]
max_sessions = 0
max_sessions_per_ip = 0
max_logins_per_ip = 0
max_passive_ports_per_ip = 0
TOML
"$ftpsgate" serve --config "$run/ftpsgate.toml" --listen 127.0.0.1:$ftpsgate_port --backend 127.0.0.1:$vsftpd_port \
	--passive-ports 26000-26999 --cert "$run/cert.pem" --key "$run/key.pem" >"$run/ftpsgate.log" 2>&1 &
ftpsgate_pid=$!
pids+=($ftpsgate_pid)

cat >"$run/proftpd.conf" <<EOF
ServerType standalone
ServerName "mod_proxy in front of vsftpd"
DefaultAddress 127.0.0.1
SocketBindTight on
Port $proftpd_port
UseIPv6 off
User $user
Group $user
ScoreboardFile $run/proftpd.scoreboard
PidFile $run/proftpd.pid
DelayTable $run/proftpd.delay
<IfModule mod_delay.c>
  DelayEngine off
</IfModule>
ControlsEngine off
WtmpLog off
UseReverseDNS off
MaxInstances 5000
PassivePorts 27000 27999
SystemLog $run/proftpd.log
ModulePath $cache/proftpd/usr/lib/proftpd
LoadModule mod_tls.c
LoadModule mod_proxy.c
TLSEngine on
# TLS on the control connection; the data connection as PROT says (with
# "on", PROT C gets 534 and the transfer hangs).
TLSRequired ctrl
TLSProtocol TLSv1.2 TLSv1.3
TLSECCertificateFile $run/cert.pem
TLSECCertificateKeyFile $run/key.pem
# Without it, every session process parses the system CA bundle.
TLSCACertificateFile $run/cert.pem
TLSOptions NoSessionReuseRequired
ProxyEngine on
ProxyRole reverse
ProxyTables $run/proxy-tables
ProxyReverseServers ftp://127.0.0.1:$vsftpd_port
ProxyTLSEngine off
EOF
"$cache/proftpd/usr/sbin/proftpd" --nodaemon --config "$run/proftpd.conf" >"$run/proftpd.out" 2>&1 &
proftpd_pid=$!
pids+=($proftpd_pid)

wait_listen() { # PORT...
	local port
	for port in "$@"; do
		for _ in $(seq 100); do
			if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then continue 2; fi
			sleep 0.1
		done
		say "nothing listens on $port; logs in $run"
		exit 1
	done
}
wait_listen $vsftpd_port $vsftpd_tls_port $ftpsgate_port $proftpd_port

# --- measuring ---

# proc_tree PID WHAT: WHAT=cpu prints the CPU seconds of PID and its live
# descendants (utime+stime+cutime+cstime: reaped children are in their
# parent's c-times), WHAT=pss the kilobytes of PSS summed over them.
proc_tree() {
	python3 - "$1" "$2" <<'EOF'
import os, sys
root, what = int(sys.argv[1]), sys.argv[2]
children = {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        stat = open(f"/proc/{p}/stat").read()
    except OSError:
        continue
    fields = stat[stat.rindex(")") + 2:].split()
    children.setdefault(int(fields[1]), []).append((int(p), fields))
tree, todo = [], [root]
try:
    stat = open(f"/proc/{root}/stat").read()
    root_fields = stat[stat.rindex(")") + 2:].split()
except OSError:
    sys.exit("no process %d" % root)
fields_of = {root: root_fields}
while todo:
    p = todo.pop()
    tree.append(p)
    for c, f in children.get(p, []):
        fields_of[c] = f
        todo.append(c)
if what == "cpu":
    tck = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime are fields 14-17 of stat, 11-14 here.
    print(sum(sum(int(x) for x in fields_of[p][11:15]) for p in tree) / tck)
else:
    kb = 0
    for p in tree:
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    kb += int(line.split()[1])
        except OSError:
            pass
    print(kb)
EOF
}

calc() { python3 -c "print(round($1, ${2:-2}))"; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))" "$1" "$2"; }

curl_common=(-sS --max-time 300 --cacert "$run/cert.pem" -u "$user:$password")
# bulk NAME PID PORT PROT(P|C) DIR(down|up): sets speed_mib, cpu_gib
bulk() {
	local name=$1 pid=$2 port=$3 prot=$4 dir=$5 args=(--ssl-reqd) before after speed
	# --ssl-reqd would override --ftp-ssl-control: TLS on control only.
	[ "$prot" = C ] && args=(--ftp-ssl-control)
	before=$(proc_tree "$pid" cpu)
	if [ "$dir" = down ]; then
		speed=$(curl "${curl_common[@]}" "${args[@]}" -o /dev/null -w '%{speed_download}' "ftp://127.0.0.1:$port/big.bin") || speed=0
	else
		speed=$(curl "${curl_common[@]}" "${args[@]}" -T "$run/upload.bin" -w '%{speed_upload}' "ftp://127.0.0.1:$port/up-$name.bin") || speed=0
	fi
	[ "$speed" != 0 ] || say "$name: curl PROT $prot $dir failed"
	after=$(proc_tree "$pid" cpu)
	# Dropped at once, its dirty pages are never written back: a disk
	# flushing earlier uploads would slow whichever proxy runs next.
	rm -f "$run/home/up-$name.bin"
	speed_mib=$(calc "$speed / 1048576" 0)
	cpu_gib=$(calc "($after - $before) / ($SIZE_MIB / 1024)")
}

# bench_load NAME PID PORT OUT ARGS...: ftpsgate bench --json into OUT,
# and the proxy's CPU seconds meanwhile in OUT.cpu
bench_load() {
	local name=$1 pid=$2 port=$3 out=$4 before after
	shift 4
	before=$(proc_tree "$pid" cpu)
	"$ftpsgate" bench --address "127.0.0.1:$port" --ca "$run/cert.pem" --user "$user" \
		--password-file "$run/password" --curves x25519,p256 --json --progress 0 "$@" >"$out" || say "$name: bench reported errors: $(json "$out" first_errors)"
	after=$(proc_tree "$pid" cpu)
	calc "$after - $before" 3 >"$out.cpu"
}

# idle_memory NAME PID PORT N: KiB of PSS per idle logged-in session
idle_memory() {
	local name=$1 pid=$2 port=$3 n=$4 before after opened=0 bpid
	before=$(proc_tree "$pid" pss)
	"$ftpsgate" bench --address "127.0.0.1:$port" --ca "$run/cert.pem" --user "$user" \
		--password-file "$run/password" --curves x25519,p256 --json --idle "$n" --sessions 8 --duration 600s --progress 1s \
		>"$run/idle-$name.json" 2>"$run/idle-$name.progress" &
	bpid=$!
	pids+=("$bpid")
	for _ in $(seq 600); do
		line=$(tail -n 1 "$run/idle-$name.progress" 2>/dev/null || true)
		opened=$(echo "$line" | sed -n 's/.*sessions \([0-9]*\).*errors \([0-9]*\).*/\1 \2/p')
		[ -n "$opened" ] && [ $((${opened% *} + ${opened#* })) -ge "$n" ] && break
		kill -0 "$bpid" 2>/dev/null || break
		sleep 1
	done
	sleep 2
	after=$(proc_tree "$pid" pss)
	kill -TERM "$bpid" 2>/dev/null || true
	wait "$bpid" || true
	held=$(json "$run/idle-$name.json" held)
	idle_kib=$(calc "($after - $before) / $n" 1)
}

declare -A fig pid_of port_of idle_of
pid_of=([ftpsgate]=$ftpsgate_pid [proftpd]=$proftpd_pid)
port_of=([ftpsgate]=$ftpsgate_port [proftpd]=$proftpd_port)
idle_of=([ftpsgate]=$IDLE_FTPSGATE [proftpd]=$IDLE_PROFTPD)
median() { python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
# Each measurement runs on both proxies back to back, so that what else
# loads the machine meanwhile weighs on both alike; bulk transfers ROUNDS
# times over, each figure the median of its rounds.
declare -A speeds cpus
for round in $(seq "$ROUNDS"); do
	for prot in P C; do
		for dir in down up; do
			for who in ftpsgate proftpd; do
				say "$who: curl PROT $prot $dir, $SIZE_MIB MiB (round $round of $ROUNDS)"
				bulk $who "${pid_of[$who]}" "${port_of[$who]}" $prot $dir
				speeds[$who.$prot.$dir]+=" $speed_mib" cpus[$who.$prot.$dir]+=" $cpu_gib"
			done
		done
	done
done
for key in "${!speeds[@]}"; do
	# shellcheck disable=SC2086 # one figure per round
	fig[$key.mib]=$(median ${speeds[$key]}) fig[$key.cpu]=$(median ${cpus[$key]})
done
for who in ftpsgate proftpd; do
	say "$who: sessions, 8 clients, $DURATION"
	bench_load $who "${pid_of[$who]}" "${port_of[$who]}" "$run/login-$who.json" --op login --sessions 8 --duration "$DURATION"
	fig[$who.setup50]=$(json "$run/login-$who.json" "round(setup_ms['p50'], 1)")
	fig[$who.setup90]=$(json "$run/login-$who.json" "round(setup_ms['p90'], 1)")
	fig[$who.sps]=$(json "$run/login-$who.json" "round(sessions_per_sec, 1)")
	fig[$who.cpums]=$(calc "$(cat "$run/login-$who.json.cpu") * 1000 / $(json "$run/login-$who.json" sessions)")
done
for who in ftpsgate proftpd; do
	say "$who: 4 KiB files over one session, $DURATION"
	bench_load $who "${pid_of[$who]}" "${port_of[$who]}" "$run/files-$who.json" --op retr --size 4KiB --sessions 1 \
		--transfers-per-session 0 --duration "$DURATION"
	fig[$who.files]=$(json "$run/files-$who.json" "round(files_per_sec, 1)")
done
for who in ftpsgate proftpd; do
	say "$who: ${idle_of[$who]} idle sessions"
	idle_memory $who "${pid_of[$who]}" "${port_of[$who]}" "${idle_of[$who]}"
	fig[$who.idle]=$idle_kib fig[$who.held]=$held fig[$who.idle_n]=${idle_of[$who]}
done
say "vsftpd FTPS (direct): sessions, 8 clients, $DURATION"
vsftpd_tls_pid=${pids[1]}
bench_load vsftpd "$vsftpd_tls_pid" $vsftpd_tls_port "$run/login-vsftpd.json" --op login --sessions 8 --duration "$DURATION"
vs50=$(json "$run/login-vsftpd.json" "round(setup_ms['p50'], 1)")
say "vsftpd FTPS (direct): 4 KiB files over one session, $DURATION"
bench_load vsftpd "$vsftpd_tls_pid" $vsftpd_tls_port "$run/files-vsftpd.json" --op retr --size 4KiB --sessions 1 \
	--transfers-per-session 0 --duration "$DURATION"
vs_files=$(json "$run/files-vsftpd.json" "round(files_per_sec, 1)")

# The proxy holds two descriptors per session and a few of its own.
max_n=$((($(ulimit -Hn) - 20) / 2))
[ "$max_n" -lt "$IDLE_MAX" ] || max_n=$IDLE_MAX
say "ftpsgate: $max_n idle sessions in front of an in-memory backend"
"$cache/membackend" -listen 127.0.0.1:$membackend_port -user "$user" -password-file "$run/password" \
	</dev/null >"$run/membackend.out" 2>&1 &
pids+=($!)
"$ftpsgate" serve --config "$run/ftpsgate.toml" --listen 127.0.0.1:$ftpsgate_max_port --backend 127.0.0.1:$membackend_port \
	--passive-ports 28000-28999 --cert "$run/cert.pem" --key "$run/key.pem" >"$run/ftpsgate-max.log" 2>&1 &
max_pid=$!
pids+=($max_pid)
wait_listen $membackend_port $ftpsgate_max_port
idle_memory ftpsgate-max $max_pid $ftpsgate_max_port "$max_n"
fig[max.idle]=$idle_kib fig[max.held]=$held

ratio() { python3 -c "a, b = $1, $2; print(round(a / b, 2) if b else '-')"; }
row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }

echo
echo "ftpsgate against ProFTPD $("$cache/proftpd/usr/sbin/proftpd" --version 2>/dev/null | awk '{print $NF}') + mod_proxy, both in front of vsftpd, on $(nproc) cores; $(date -u +%Y-%m-%d)"
echo
row measure ftpsgate "ProFTPD mod_proxy" ratio "target (issue 9)"
row --- --- --- --- ---
for prot in P C; do
	for dir in down up; do
		what=download
		[ $dir = up ] && what=upload
		target=""
		case $prot$dir in
		Pdown) target="≥ bare Go relay (make bench)" ;;
		Pup) target="≥ 1.8×" ;;
		esac
		row "PROT $prot $what MiB/s" "${fig[ftpsgate.$prot.$dir.mib]}" "${fig[proftpd.$prot.$dir.mib]}" \
			"$(ratio "${fig[ftpsgate.$prot.$dir.mib]}" "${fig[proftpd.$prot.$dir.mib]}")" "$target"
		case $prot$dir in
		Pdown) target="≤ 1.2" ;;
		Pup) target="≤ 1.0" ;;
		*) target="≤ 0.45" ;;
		esac
		row "PROT $prot $what CPU s/GiB" "${fig[ftpsgate.$prot.$dir.cpu]}" "${fig[proftpd.$prot.$dir.cpu]}" \
			"$(ratio "${fig[ftpsgate.$prot.$dir.cpu]}" "${fig[proftpd.$prot.$dir.cpu]}")" "$target"
	done
done
row "session setup p50 ms (vsftpd FTPS: $vs50)" "${fig[ftpsgate.setup50]}" "${fig[proftpd.setup50]}" \
	"$(ratio "${fig[ftpsgate.setup50]}" "${fig[proftpd.setup50]}")" "≤ vsftpd's own FTPS"
row "session setup p90 ms" "${fig[ftpsgate.setup90]}" "${fig[proftpd.setup90]}" \
	"$(ratio "${fig[ftpsgate.setup90]}" "${fig[proftpd.setup90]}")" "≤ 2× p50"
row "sessions/s, 8 clients" "${fig[ftpsgate.sps]}" "${fig[proftpd.sps]}" \
	"$(ratio "${fig[ftpsgate.sps]}" "${fig[proftpd.sps]}")" "≥ 4×"
row "proxy CPU ms per session" "${fig[ftpsgate.cpums]}" "${fig[proftpd.cpums]}" \
	"$(ratio "${fig[ftpsgate.cpums]}" "${fig[proftpd.cpums]}")" "≤ 1.5"
row "4 KiB files/s, one session (vsftpd FTPS: $vs_files)" "${fig[ftpsgate.files]}" "${fig[proftpd.files]}" \
	"$(ratio "${fig[ftpsgate.files]}" "${fig[proftpd.files]}")" "≥ 1.3×"
row "KiB per idle session (held/opened)" "${fig[ftpsgate.idle]} (${fig[ftpsgate.held]}/${fig[ftpsgate.idle_n]})" \
	"${fig[proftpd.idle]} (${fig[proftpd.held]}/${fig[proftpd.idle_n]})" \
	"$(ratio "${fig[ftpsgate.idle]}" "${fig[proftpd.idle]}")" "≥ 24× below"
row "KiB per idle session at $max_n, in-memory backend (held)" "${fig[max.idle]} (${fig[max.held]})" - - "≤ 48 at 10,000"
