package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
)

func tailCommand() *cli.Command {
	return &cli.Command{
		Name:      "tail",
		Usage:     "pretty-print the JSON log, filtered; with -f, follow it across rotation",
		ArgsUsage: "[FILE|-]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep reading as the file grows, is rotated or truncated (Ctrl-C stops)"},
			&cli.IntFlag{Name: "lines", Aliases: []string{"n"}, Value: -1, Usage: "start with the last `N` matching records (default: all; 10 with -f)"},
			&cli.StringFlag{Name: "session", Usage: "only the session with this `ID`"},
			&cli.StringFlag{Name: "user", Usage: "only user `U`'s records, from the login on"},
			&cli.StringFlag{Name: "client", Usage: "only records of client `IP` (or network, e.g. 203.0.113.0/24)"},
			&cli.StringFlag{Name: "level", Usage: "minimum `LEVEL`: debug, info, warn or error"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return fmt.Errorf("tail: one FILE at most, got %d", c.NArg())
			}
			filter, err := newRecordFilter(c.String("session"), c.String("user"), c.String("client"), c.String("level"))
			if err != nil {
				return err
			}
			t := &tailer{
				out:    c.App.Writer,
				filter: filter,
				color:  colorTerminal(c.App.Writer),
				follow: c.Bool("follow"),
				lines:  c.Int("lines"),
			}
			path := c.Args().First()
			if path == "" || path == "-" {
				// A pipe ends when its writer does: -f changes nothing
				// (records stream as they come), and Ctrl-C ends the
				// process as usual.
				t.follow = false
				return t.read(os.Stdin)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return t.file(ctx, path)
		},
	}
}

// colorTerminal reports whether w is a terminal that wants colour
// (https://no-color.org: NO_COLOR set turns it off).
func colorTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// defaultFollowLines is how many records -f shows before following, as
// tail(1) does.
const defaultFollowLines = 10

// tailPoll is how often a followed file is looked at for growth,
// rotation and truncation.
const tailPoll = 250 * time.Millisecond

// tailBytesPerRecord and tailMinWindow size the end of a file read for
// its last N records (-n, -f): records are rarely over 1 KiB, so N times
// 4 KiB holds N of them unless a filter leaves most out.
const (
	tailBytesPerRecord = 4 << 10
	tailMinWindow      = 64 << 10
)

// maxLogLine bounds a line being assembled; a longer one is printed in
// pieces rather than buffered without end.
const maxLogLine = 1 << 20

// tailer prints a log: each line that passes the filter, rendered.
type tailer struct {
	out    io.Writer
	filter *recordFilter
	color  bool
	follow bool
	lines  int           // print only the last lines records read before following; < 0: all (10 with follow)
	poll   time.Duration // zero: tailPoll

	backlog []string // the last lines rendered records, until the first EOF
	started bool     // the backlog has been printed: records go straight out
}

// read prints r, a stream, until EOF.
func (t *tailer) read(r io.Reader) error {
	var lb lineBuffer
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		lb.add(buf[:n], t.line)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	lb.flush(t.line)
	t.start()
	return nil
}

// file prints the file at path and, with follow, keeps printing what is
// appended to it until ctx is done. Rotation (the file renamed away and a
// new one created at path) is noticed by the file's identity changing, the
// old file being read to its end first; truncation by the size falling
// below what was read.
func (t *tailer) file(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	opened, err := f.Stat()
	if err != nil {
		return err
	}
	var (
		lb   lineBuffer
		off  int64
		buf  = make([]byte, 64<<10)
		poll = t.poll
	)
	if poll <= 0 {
		poll = tailPoll
	}
	// skip drops the first line read: set when reading starts mid-file.
	skip := false
	line := func(b []byte) {
		if skip {
			skip = false
			return
		}
		t.line(b)
	}
	if n := t.backlogSize(); n >= 0 && opened.Mode().IsRegular() {
		// Only the last n records are printed: start near the end
		// rather than render a large file whole. Starting one byte
		// early and dropping the first (partial) line keeps a line
		// that begins exactly at the window.
		window := max(int64(n)*tailBytesPerRecord, tailMinWindow)
		if start := opened.Size() - window - 1; start > 0 {
			if off, err = f.Seek(start, io.SeekStart); err != nil {
				return err
			}
			skip = true
		}
	}
	drain := func() error {
		for {
			n, err := f.Read(buf)
			off += int64(n)
			lb.add(buf[:n], line)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	if err := drain(); err != nil {
		return err
	}
	if skip {
		// No line ended in the window: what was read is the middle of
		// one longer line, dropped up to its end.
		lb.partial = lb.partial[:0]
	}
	if !t.follow {
		lb.flush(t.line)
		t.start()
		return nil
	}
	t.start()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			lb.flush(line)
			return nil
		case <-tick.C:
		}
		cur, err := os.Stat(path)
		switch {
		case err != nil:
			// Renamed away, the new file not there yet: the writer may
			// still be appending to the old one.
		case !os.SameFile(opened, cur):
			if err := drain(); err != nil {
				return err
			}
			nf, err := os.Open(path)
			if err != nil {
				continue // gone again: try at the next tick
			}
			ni, err := nf.Stat()
			if err != nil {
				nf.Close()
				continue
			}
			lb.flush(line)
			skip = false
			f.Close()
			f, opened, off = nf, ni, 0
		case cur.Size() < off:
			lb.flush(line)
			skip = false
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			off = 0
		}
		if err := drain(); err != nil {
			return err
		}
	}
}

// line handles one log line: filter, render, print or keep in the backlog.
func (t *tailer) line(b []byte) {
	s, ok := t.render(b)
	if !ok {
		return
	}
	if t.started || t.backlogSize() < 0 {
		io.WriteString(t.out, s+"\n")
		return
	}
	t.backlog = append(t.backlog, s)
	if n := t.backlogSize(); n >= 0 && len(t.backlog) > 2*n+64 {
		t.backlog = append(t.backlog[:0], t.backlog[len(t.backlog)-n:]...)
	}
}

// backlogSize is how many records read before following are printed; -1
// for all of them.
func (t *tailer) backlogSize() int {
	if t.lines < 0 && t.follow {
		return defaultFollowLines
	}
	return t.lines
}

// start prints the backlog; from then on records are printed as they come.
func (t *tailer) start() {
	if t.started {
		return
	}
	t.started = true
	keep := t.backlog
	if n := t.backlogSize(); n >= 0 && len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	for _, s := range keep {
		io.WriteString(t.out, s+"\n")
	}
	t.backlog = nil
}

// render turns a log line into what is printed, and reports whether it
// passes the filter. A line that is not a JSON object is printed as it
// is (a panic, a message written before the logger existed) unless the
// filter asks for a session, a user or a client, which it cannot belong to.
func (t *tailer) render(b []byte) (string, bool) {
	b = bytes.TrimRight(b, "\r\n")
	rec, ok := parseRecord(b)
	if !ok {
		if t.filter.narrowed() || len(bytes.TrimSpace(b)) == 0 {
			return "", false
		}
		return escapeText(string(b)), true
	}
	if !t.filter.match(rec) {
		return "", false
	}
	return (&recordPrinter{color: t.color}).format(rec), true
}

// lineBuffer assembles lines from reads that end anywhere.
type lineBuffer struct {
	partial []byte
}

// add passes each complete line of p to fn and keeps the rest.
func (lb *lineBuffer) add(p []byte, fn func([]byte)) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			lb.partial = append(lb.partial, p...)
			if len(lb.partial) > maxLogLine {
				lb.flush(fn)
			}
			return
		}
		if len(lb.partial) > 0 {
			lb.partial = append(lb.partial, p[:i]...)
			fn(lb.partial)
			lb.partial = lb.partial[:0]
		} else {
			fn(p[:i])
		}
		p = p[i+1:]
	}
}

// flush passes a last line without its newline to fn.
func (lb *lineBuffer) flush(fn func([]byte)) {
	if len(lb.partial) > 0 {
		fn(lb.partial)
		lb.partial = lb.partial[:0]
	}
}

// record is one JSON log record, its fields in the order they were
// written (zerolog's order says something: the session's context first).
type record struct {
	fields []recordField
}

type recordField struct {
	key string
	raw json.RawMessage
}

// parseRecord parses a line holding one JSON object.
func parseRecord(line []byte) (*record, bool) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	rec := &record{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, ok := tok.(string)
		if !ok {
			return nil, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		rec.fields = append(rec.fields, recordField{key, raw})
	}
	if _, err := dec.Token(); err != nil || dec.InputOffset() != int64(len(line)) {
		return nil, false
	}
	return rec, true
}

// get returns the raw value of the last field named key (JSON's rule for
// a repeated key).
func (r *record) get(key string) (json.RawMessage, bool) {
	for i := len(r.fields) - 1; i >= 0; i-- {
		if r.fields[i].key == key {
			return r.fields[i].raw, true
		}
	}
	return nil, false
}

// str returns a field as text: a string's value, or any other value as
// written.
func (r *record) str(key string) string {
	raw, ok := r.get(key)
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// num returns a numeric field.
func (r *record) num(key string) (float64, bool) {
	raw, ok := r.get(key)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

func (r *record) has(key string) bool {
	_, ok := r.get(key)
	return ok
}

// level returns the record's level; NoLevel when it has none.
func (r *record) level() zerolog.Level {
	if !r.has(zerolog.LevelFieldName) {
		return zerolog.NoLevel
	}
	l, err := zerolog.ParseLevel(r.str(zerolog.LevelFieldName))
	if err != nil {
		return zerolog.NoLevel
	}
	return l
}

// recordFilter selects records by session, user, client and level.
type recordFilter struct {
	session string
	user    string
	client  netip.Prefix // invalid: any
	level   zerolog.Level
	byLevel bool

	// userSessions are the sessions seen logged in as user: their later
	// records (a session end after a failed login) carry no user field.
	userSessions map[string]bool
}

func newRecordFilter(session, user, client, level string) (*recordFilter, error) {
	f := &recordFilter{session: session, user: user, userSessions: map[string]bool{}}
	if client != "" {
		p, err := netip.ParsePrefix(client)
		if err != nil {
			ip, ierr := netip.ParseAddr(client)
			if ierr != nil {
				return nil, fmt.Errorf("tail: --client %q: want an IP address or a network such as 203.0.113.0/24", client)
			}
			p = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		}
		f.client = unmapPrefix(p)
	}
	if level != "" {
		l, err := parseLevel(level)
		if err != nil {
			return nil, fmt.Errorf("tail: --level %q: want debug, info, warn or error", level)
		}
		f.level, f.byLevel = l, true
	}
	return f, nil
}

// unmapPrefix turns an IPv4-mapped prefix (::ffff:192.0.2.0/120) into
// the IPv4 one it means (192.0.2.0/24), as clients' addresses are
// unmapped before they are compared. A mapped prefix shorter than /96
// covers more than IPv4 and stays as it is.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// narrowed reports whether the filter asks for one session, user or
// client: then only records that name them pass.
func (f *recordFilter) narrowed() bool {
	return f.session != "" || f.user != "" || f.client.IsValid()
}

func (f *recordFilter) match(r *record) bool {
	// The user first: it remembers sessions even from records the other
	// criteria leave out.
	if f.user != "" {
		sess := r.str("session")
		switch u := r.str("user"); {
		case u == f.user:
			if sess != "" {
				f.userSessions[sess] = true
			}
		case u == "" && r.str("tried_user") == f.user:
			// A login as the user that did not succeed: shown, but the
			// session is not the user's.
		case u == "" && f.userSessions[sess]:
		default:
			return false
		}
		if r.str(zerolog.MessageFieldName) == "session end" {
			// A session's last record: forget it, or following a busy
			// log keeps every session ever seen.
			delete(f.userSessions, sess)
		}
	}
	if f.byLevel {
		if l := r.level(); l != zerolog.NoLevel && l < f.level {
			return false
		}
	}
	if f.session != "" && r.str("session") != f.session {
		return false
	}
	if f.client.IsValid() {
		ip, ok := clientIP(r.str("client"))
		if !ok || !f.client.Contains(ip) {
			return false
		}
	}
	return true
}

// clientIP returns the IP of a client field, "ip:port".
func clientIP(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap(), true
	}
	return netip.Addr{}, false
}

// recordPrinter renders one record as one line.
type recordPrinter struct {
	color bool
	b     strings.Builder
}

// ANSI styles.
const (
	styleDim    = "2"
	styleBold   = "1"
	styleRed    = "31"
	styleGreen  = "32"
	styleYellow = "33"
	styleBlue   = "34"
	styleCyan   = "36"
)

func (p *recordPrinter) paint(style, s string) string {
	if !p.color || s == "" {
		return s
	}
	return "\x1b[" + style + "m" + s + "\x1b[0m"
}

// add appends words separated by single spaces.
func (p *recordPrinter) add(words ...string) {
	for _, w := range words {
		if w == "" {
			continue
		}
		if p.b.Len() > 0 {
			p.b.WriteByte(' ')
		}
		p.b.WriteString(w)
	}
}

// format renders r: time, level, then a form of its own for the records
// people look for, and the message with every other field as key=value
// for the rest.
func (p *recordPrinter) format(r *record) string {
	r = r.display()
	p.add(p.paint(styleDim, recordTime(r)), p.levelTag(r.level()))
	msg := r.str(zerolog.MessageFieldName)
	if form, ok := recordForms[msg]; ok {
		form(p, r)
		if e := r.str(zerolog.ErrorFieldName); e != "" {
			p.b.WriteString(": " + p.paint(styleRed, e))
		}
		if s := r.str("session"); s != "" {
			p.add(p.paint(styleDim, "[session "+s+"]"))
		}
		return p.b.String()
	}
	p.add(p.paint(styleBold, msg))
	for _, f := range r.fields {
		switch f.key {
		case zerolog.TimestampFieldName, zerolog.LevelFieldName, zerolog.MessageFieldName:
			continue
		}
		p.add(p.paint(styleCyan, f.key+"=") + fieldText(f.raw))
	}
	return p.b.String()
}

// recordForms are the one-line forms of the records README.md lists.
var recordForms = map[string]func(*recordPrinter, *record){
	"session start":   formSessionStart,
	"tls established": formTLS,
	"login":           formLogin,
	"login failed":    formLogin,
	"transfer":        formTransfer,
	"session end":     formSessionEnd,
	"backend down":    formBackendHealth,
	"backend up":      formBackendHealth,
	"backend ejected": formBackendEjected,
	"certificate":     formCertificate,
	"command":         formCommand,
}

// formTransfer: alice@203.0.113.7 RETR /pub/file.iso download 1.0 GiB in
// 9.8s (104.5 MiB/s) PROT P resumed 226
func formTransfer(p *recordPrinter, r *record) {
	p.add(p.who(r), p.paint(styleBold, r.str("verb")), r.str("path"), r.str("direction"))
	n, _ := r.num("bytes")
	p.add(formatBytes(n))
	if ms, ok := r.num("duration"); ok {
		p.add("in", formatMillis(ms))
	}
	if bps, ok := r.num("bytes_per_sec"); ok {
		p.add("(" + formatBytes(bps) + "/s)")
	}
	if prot := r.str("prot"); prot != "" {
		p.add("PROT", prot)
	}
	switch r.str("data_resumed") {
	case "true":
		p.add("resumed")
	case "false":
		p.add(p.paint(styleYellow, "not resumed"))
	}
	p.add(p.code(r))
}

// formCommand (debug): alice@203.0.113.7 command RETR /pub/file.iso
func formCommand(p *recordPrinter, r *record) {
	p.add(p.who(r), "command", p.paint(styleBold, r.str("command")))
}

// formSessionStart: 203.0.113.7:51234 session start (explicit)
func formSessionStart(p *recordPrinter, r *record) {
	p.add(r.str("client"), "session start")
	if l := r.str("listener"); l != "" {
		p.add("(" + l + ")")
	}
}

// formTLS: 203.0.113.7 tls established TLS 1.3 TLS_AES_128_GCM_SHA256 sni ftp.example.com new session
func formTLS(p *recordPrinter, r *record) {
	p.add(p.who(r), "tls established", r.str("tls_version"), r.str("cipher"))
	if sni := r.str("sni"); sni != "" {
		p.add("sni", sni)
	}
	switch r.str("resumed") {
	case "true":
		p.add("resumed")
	case "false":
		p.add("new session")
	}
}

// formLogin: alice@203.0.113.7 login on backend mem (route partners);
// bob@203.0.113.7 login failed 530 on backend mem
func formLogin(p *recordPrinter, r *record) {
	msg := r.str(zerolog.MessageFieldName)
	if msg == "login failed" {
		msg = p.paint(styleYellow, msg)
	}
	p.add(p.who(r), msg)
	if r.has("code") {
		p.add(p.code(r))
	}
	if b := r.str("backend"); b != "" {
		p.add("on backend", b)
	}
	if rt := r.str("route"); rt != "" {
		p.add("(route " + rt + ")")
	}
}

// formSessionEnd: alice@203.0.113.7 session end (quit) after 12.3s: 2
// transfers, 1.0 GiB down, 3.0 KiB up
func formSessionEnd(p *recordPrinter, r *record) {
	p.add(p.who(r), "session end")
	if reason := r.str("reason"); reason != "" {
		p.add("(" + reason + ")")
	}
	if ms, ok := r.num("duration"); ok {
		p.add("after", formatMillis(ms))
	}
	n, _ := r.num("transfers")
	down, _ := r.num("bytes_down")
	up, _ := r.num("bytes_up")
	p.b.WriteString(":")
	p.add(plural(int(n), "transfer")+",", formatBytes(down), "down,", formatBytes(up), "up")
}

// formBackendHealth: backend b (pool default) down after 3 failed checks
func formBackendHealth(p *recordPrinter, r *record) {
	state, style, count, what := "down", styleRed, "fall", "failed check"
	if r.str(zerolog.MessageFieldName) == "backend up" {
		state, style, count, what = "up", styleGreen, "rise", "good check"
	}
	p.add("backend", p.paint(styleBold, r.str("backend")))
	if pool := r.str("pool"); pool != "" {
		p.add("(pool " + pool + ")")
	}
	p.add(p.paint(style, state))
	if n, ok := r.num(count); ok {
		p.add("after", plural(int(n), what))
	}
}

// formBackendEjected: 203.0.113.7 backend b ejected for 10s
func formBackendEjected(p *recordPrinter, r *record) {
	p.add(p.who(r), "backend", p.paint(styleBold, r.str("backend")), p.paint(styleYellow, "ejected"))
	if ms, ok := r.num("backoff"); ok {
		p.add("for", formatMillis(ms))
	}
}

// formCertificate: certificate loaded cert.pem: ftp.example.com serial 1f until 2026-01-02
func formCertificate(p *recordPrinter, r *record) {
	p.add("certificate", p.paint(styleBold, r.str("event")), r.str("source"))
	if raw, ok := r.get("names"); ok {
		var names []string
		if json.Unmarshal(raw, &names) == nil && len(names) > 0 {
			p.b.WriteString(":")
			p.add(strings.Join(names, ", "))
		}
	}
	if s := r.str("serial"); s != "" {
		p.add("serial", s)
	}
	if na := r.str("not_after"); na != "" {
		if t, err := time.Parse(time.RFC3339Nano, na); err == nil {
			na = t.Format(time.DateOnly)
		}
		p.add("until", na)
	}
}

// who names the client of a record: user@ip once logged in, or with the
// name of a login under way (tried_user), else the ip.
func (p *recordPrinter) who(r *record) string {
	c := r.str("client")
	if ip, ok := clientIP(c); ok {
		c = ip.String()
	}
	u := r.str("user")
	if u == "" {
		u = r.str("tried_user")
	}
	if u != "" {
		if c == "" {
			return p.paint(styleBold, u)
		}
		return p.paint(styleBold, u+"@"+c)
	}
	return c
}

// code renders a reply code, green for success, red for failure.
func (p *recordPrinter) code(r *record) string {
	c := r.str("code")
	switch {
	case strings.HasPrefix(c, "2"):
		return p.paint(styleGreen, c)
	case strings.HasPrefix(c, "4"), strings.HasPrefix(c, "5"):
		return p.paint(styleRed, c)
	}
	return c
}

// levelTag is a level's three-letter tag, as zerolog's console writer
// prints it.
func (p *recordPrinter) levelTag(l zerolog.Level) string {
	switch l {
	case zerolog.TraceLevel:
		return p.paint(styleDim, "TRC")
	case zerolog.DebugLevel:
		return p.paint(styleBlue, "DBG")
	case zerolog.InfoLevel:
		return p.paint(styleGreen, "INF")
	case zerolog.WarnLevel:
		return p.paint(styleYellow, "WRN")
	case zerolog.ErrorLevel:
		return p.paint(styleRed, "ERR")
	case zerolog.FatalLevel:
		return p.paint(styleRed+";"+styleBold, "FTL")
	case zerolog.PanicLevel:
		return p.paint(styleRed+";"+styleBold, "PNC")
	}
	return "???"
}

// recordTime renders the record's time of day, in the zone it was
// written in.
func recordTime(r *record) string {
	raw, ok := r.get(zerolog.TimestampFieldName)
	if !ok {
		return "--:--:--"
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.Format(time.TimeOnly)
		}
		return s
	}
	// zerolog.TimeFormatUnix and its finer variants write numbers.
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return string(raw)
	}
	var t time.Time
	switch {
	case f < 1e11:
		t = time.Unix(0, int64(f*1e9))
	case f < 1e14:
		t = time.UnixMilli(int64(f))
	default:
		t = time.UnixMicro(int64(f))
	}
	return t.Format(time.TimeOnly)
}

// fieldText renders a field's value for key=value: strings bare unless
// they need quotes, anything else as written.
func fieldText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return string(raw)
	}
	if s == "" || strings.ContainsAny(s, " \t\"=\\") || strconv.Quote(s) != `"`+s+`"` {
		return strconv.Quote(s)
	}
	return s
}

// formatBytes renders a byte count with binary units: 512 B, 1.0 KiB,
// 104.5 MiB.
func formatBytes(n float64) string {
	if n < 1024 {
		return strconv.FormatFloat(n, 'f', 0, 64) + " B"
	}
	units := "KMGTPE"
	i := -1
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return strconv.FormatFloat(n, 'f', 1, 64) + " " + string(units[i]) + "iB"
}

// formatMillis renders a duration given in milliseconds, as zerolog
// writes them: 7ms, 9.8s, 2m3s.
func formatMillis(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d < time.Second:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	}
	return d.Round(time.Second).String()
}

// plural counts things in English: 1 transfer, 2 transfers, 3 entries.
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "y") && !strings.ContainsAny(what[len(what)-2:len(what)-1], "aeiou") {
		return strconv.Itoa(n) + " " + what[:len(what)-1] + "ies"
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// display returns r with every key and value made safe to print on a
// terminal (see escapeText): the values come from clients (a user name,
// a path, an SNI) and must not reach the operator's terminal as escape
// sequences or bidi overrides. Every form and the generic key=value path
// print from this copy, so no field can be missed.
func (r *record) display() *record {
	d := &record{fields: make([]recordField, len(r.fields))}
	for i, f := range r.fields {
		d.fields[i] = recordField{key: escapeText(f.key), raw: displayJSON(f.raw)}
	}
	return d
}

// displayJSON returns raw with every string in it (keys too, at any
// depth) passed through escapeText; raw itself when nothing needs it.
func displayJSON(raw json.RawMessage) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return json.RawMessage(strconv.Quote(escapeText(string(raw))))
	}
	// Invalid UTF-8 in raw is decoded as U+FFFD, so it counts as unsafe
	// even when every decoded string looks clean.
	if utf8.Valid(raw) && !unsafeJSON(v) {
		return raw
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(displayValue(v)) != nil {
		return json.RawMessage(strconv.Quote(escapeText(string(raw))))
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

func unsafeJSON(v any) bool {
	switch v := v.(type) {
	case string:
		return escapeText(v) != v
	case []any:
		for _, e := range v {
			if unsafeJSON(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if escapeText(k) != k || unsafeJSON(e) {
				return true
			}
		}
	}
	return false
}

func displayValue(v any) any {
	switch v := v.(type) {
	case string:
		return escapeText(v)
	case []any:
		for i, e := range v {
			v[i] = displayValue(e)
		}
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[escapeText(k)] = displayValue(e)
		}
		return m
	}
	return v
}
