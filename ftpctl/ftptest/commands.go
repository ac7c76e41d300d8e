package ftptest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// rule says when a verb may run and what it does.
type rule struct {
	open    bool // allowed before login
	needArg bool // 501 without an argument
	do      func(c *session, arg string)
}

// commands is every verb the server knows; anything else gets 502. QUIT is
// handled by dispatch, ABOR by serve (it may cut into a transfer).
var commands map[string]rule

// Reply codes that ftpctl does not name.
const (
	codeHelp          ftpctl.Code = 214
	codeSystemType    ftpctl.Code = 215
	codePathCreated   ftpctl.Code = 257
	codeBadRest       ftpctl.Code = 554 // RFC 3659 section 5.5: invalid REST parameter
	codeNameNotAllwd  ftpctl.Code = 553
	codeCmdNotAllowed ftpctl.Code = 503
)

func init() {
	commands = map[string]rule{
		"USER": {open: true, needArg: true, do: (*session).userCmd},
		"PASS": {open: true, do: (*session).pass},
		"QUIT": {open: true},
		"NOOP": {open: true, do: (*session).noop},
		"SYST": {open: true, do: (*session).syst},
		"FEAT": {open: true, do: (*session).feat},
		"HELP": {open: true, do: (*session).help},
		"OPTS": {open: true, needArg: true, do: (*session).opts},
		"HOST": {open: true, needArg: true, do: (*session).hostCmd},

		"ABOR": {do: func(c *session, _ string) { c.abort() }},
		"ALLO": {do: (*session).allo},
		"TYPE": {needArg: true, do: (*session).typ},
		"MODE": {needArg: true, do: (*session).mode},
		"STRU": {needArg: true, do: (*session).stru},
		"STAT": {do: (*session).stat},

		"PWD":  {do: (*session).pwd},
		"XPWD": {do: (*session).pwd},
		"CWD":  {needArg: true, do: (*session).cwdCmd},
		"XCWD": {needArg: true, do: (*session).cwdCmd},
		"CDUP": {do: (*session).cdup},
		"XCUP": {do: (*session).cdup},
		"MKD":  {needArg: true, do: (*session).mkd},
		"XMKD": {needArg: true, do: (*session).mkd},
		"RMD":  {needArg: true, do: (*session).rmd},
		"XRMD": {needArg: true, do: (*session).rmd},
		"DELE": {needArg: true, do: (*session).dele},
		"RNFR": {needArg: true, do: (*session).rnfr},
		"RNTO": {needArg: true, do: (*session).rnto},
		"SIZE": {needArg: true, do: (*session).size},
		"MDTM": {needArg: true, do: (*session).mdtm},
		"MLST": {do: (*session).mlst},

		"PASV": {do: (*session).pasvCmd},
		"EPSV": {do: (*session).epsv},
		"PORT": {needArg: true, do: (*session).portCmd},
		"EPRT": {needArg: true, do: (*session).eprt},
		"REST": {needArg: true, do: (*session).restCmd},

		"RETR": {needArg: true, do: (*session).retr},
		"STOR": {needArg: true, do: func(c *session, arg string) { c.upload(arg, stor) }},
		"APPE": {needArg: true, do: func(c *session, arg string) { c.upload(arg, appe) }},
		"STOU": {do: func(c *session, arg string) { c.upload(arg, stou) }},
		"LIST": {do: func(c *session, arg string) { c.list(arg, listLong) }},
		"NLST": {do: func(c *session, arg string) { c.list(arg, listNames) }},
		"MLSD": {do: func(c *session, arg string) { c.list(arg, listFacts) }},
	}
}

// Access control and session parameters.

func (c *session) userCmd(arg string) {
	if c.phase == loggedIn {
		c.reply(ftpctl.CodeNotLoggedIn, "Can't change to another user.")
		return
	}
	c.user, c.phase = arg, needPass
	c.reply(ftpctl.CodeNeedPassword, "Please specify the password.")
}

func (c *session) pass(arg string) {
	switch c.phase {
	case loggedIn:
		c.reply(ftpctl.CodeLoggedIn, "Already logged in.")
	case needUser:
		c.reply(codeCmdNotAllowed, "Login with USER first.")
	default:
		if !c.srv.checkPassword(c.user, arg) {
			c.phase = needUser
			c.reply(ftpctl.CodeNotLoggedIn, "Login incorrect.")
			return
		}
		c.phase = loggedIn
		c.reply(ftpctl.CodeLoggedIn, "Login successful.")
	}
}

func (c *session) noop(string) { c.reply(ftpctl.CodeOK, "NOOP ok.") }

// hostCmd answers HOST (RFC 7151): accepted before USER only. The name is
// recorded in Commands, where tests look for it.
func (c *session) hostCmd(string) {
	if c.phase != needUser {
		c.reply(codeCmdNotAllowed, "HOST must come before USER.")
		return
	}
	c.reply(ftpctl.CodeReady, "HOST accepted.")
}

func (c *session) syst(string) { c.reply(codeSystemType, "UNIX Type: L8") }

func (c *session) allo(string) { c.reply(ftpctl.CodeNotNeeded, "ALLO command ignored.") }

// feat answers FEAT (RFC 2389 section 3).
func (c *session) feat(string) {
	var feats []string
	if !c.srv.DisableActive {
		feats = append(feats, "EPRT")
	}
	if !c.srv.DisableEPSV && !c.srv.DisablePassive {
		feats = append(feats, "EPSV")
	}
	feats = append(feats, "HOST", "MDTM", "MLST "+c.facts.feat())
	if !c.srv.DisablePassive {
		feats = append(feats, "PASV")
	}
	feats = append(feats, "REST STREAM", "SIZE", "UTF8")
	c.send(ftpctl.FeatReply(feats))
}

// opts answers OPTS UTF8 (RFC 2640 section 3.1: paths are bytes here
// anyway) and OPTS MLST (RFC 3659 section 7.9).
func (c *session) opts(arg string) {
	name, value, _ := strings.Cut(arg, " ")
	switch strings.ToUpper(name) {
	case "UTF8", "UTF-8":
		switch strings.ToUpper(strings.TrimSpace(value)) {
		case "ON", "OFF", "":
			c.reply(ftpctl.CodeOK, "Always in UTF8 mode.")
			return
		}
	case "MLST":
		c.facts = parseFacts(value)
		c.reply(ftpctl.CodeOK, "MLST OPTS "+c.facts.String())
		return
	}
	c.reply(ftpctl.CodeArgSyntaxError, "Option not understood.")
}

// help answers HELP with the list of verbs, or whether one verb is known.
func (c *session) help(arg string) {
	verbs := make([]string, 0, len(commands))
	for v := range commands {
		verbs = append(verbs, v)
	}
	slices.Sort(verbs)
	if arg != "" {
		v := strings.ToUpper(strings.TrimSpace(arg))
		if _, ok := commands[v]; ok {
			c.reply(codeHelp, v+" is implemented.")
		} else {
			c.reply(ftpctl.CodeNotImplemented, "Unknown command "+v+".")
		}
		return
	}
	lines := []string{"The following commands are recognized."}
	for len(verbs) > 0 {
		n := min(len(verbs), 8)
		lines = append(lines, " "+strings.Join(verbs[:n], " "))
		verbs = verbs[n:]
	}
	lines = append(lines, "Help OK.")
	c.send(ftpctl.Reply{Code: codeHelp, Lines: lines})
}

// typ answers TYPE (RFC 959 section 3.1.1). Data always moves as bytes, as
// in image type: the test server never converts line endings.
func (c *session) typ(arg string) {
	switch strings.ToUpper(strings.Join(strings.Fields(arg), " ")) {
	case "I", "L 8", "L8":
		c.reply(ftpctl.CodeOK, "Switching to Binary mode.")
	case "A", "A N":
		c.reply(ftpctl.CodeOK, "Switching to ASCII mode.")
	case "E", "E N", "A T", "A C", "E T", "E C":
		c.reply(ftpctl.CodeParamNotImpl, "Type not implemented.")
	default:
		if strings.HasPrefix(strings.ToUpper(arg), "L ") {
			c.reply(ftpctl.CodeParamNotImpl, "Byte size not implemented.")
			return
		}
		c.reply(ftpctl.CodeArgSyntaxError, "Unrecognised TYPE command.")
	}
}

// mode answers MODE: only stream (RFC 959 section 5.1 minimum).
func (c *session) mode(arg string) {
	switch strings.ToUpper(arg) {
	case "S":
		c.reply(ftpctl.CodeOK, "Mode set to S.")
	case "B", "C", "Z":
		c.reply(ftpctl.CodeParamNotImpl, "Bad MODE command.")
	default:
		c.reply(ftpctl.CodeArgSyntaxError, "Unrecognised MODE command.")
	}
}

// stru answers STRU: only file structure.
func (c *session) stru(arg string) {
	switch strings.ToUpper(arg) {
	case "F":
		c.reply(ftpctl.CodeOK, "Structure set to F.")
	case "R", "P":
		c.reply(ftpctl.CodeParamNotImpl, "Bad STRU command.")
	default:
		c.reply(ftpctl.CodeArgSyntaxError, "Unrecognised STRU command.")
	}
}

// stat answers STAT: the session's status without an argument, a listing
// over the control connection with one (RFC 959 section 4.1.3).
func (c *session) stat(arg string) {
	if arg == "" {
		data := "No data connection"
		switch {
		case c.pasv != nil:
			data = "Passive mode on port " + strconv.Itoa(int(c.pasv.port()))
		case c.port.IsValid():
			data = "Active mode to " + c.port.String()
		}
		c.send(ftpctl.Reply{Code: ftpctl.CodeSystemStatus, Lines: []string{
			"FTP server status:",
			"     Connected to " + c.remote.String(),
			"     Logged in as " + c.user,
			"     TYPE: BINARY",
			"     " + data,
			"End of status",
		}})
		return
	}
	l, err := c.resolveListing(listPath(arg))
	if err != nil {
		c.reply(ftpctl.CodeFileUnavailable, "No such file or directory.")
		return
	}
	lines := []string{"Status follows:"}
	now := time.Now()
	for _, e := range l.entries {
		lines = append(lines, lsLine(e.name, e.node, now))
	}
	lines = append(lines, "End of status")
	c.send(ftpctl.Reply{Code: ftpctl.CodeFileStatus, Lines: lines})
}

// Directories and files.

func (c *session) pwd(string) {
	c.reply(codePathCreated, quote(c.cwd)+" is the current directory")
}

func (c *session) cwdCmd(arg string) { c.chdir(c.abs(arg)) }

func (c *session) cdup(string) { c.chdir(parent(c.cwd)) }

func (c *session) chdir(p string) {
	if n, err := c.srv.FS.stat(p); err != nil || !n.dir {
		c.reply(ftpctl.CodeFileUnavailable, "Failed to change directory.")
		return
	}
	c.cwd = p
	c.reply(ftpctl.CodeFileActionOK, "Directory successfully changed.")
}

func (c *session) mkd(arg string) {
	p := c.abs(arg)
	if err := c.srv.FS.mkdir(p); err != nil {
		c.reply(ftpctl.CodeFileUnavailable, "Create directory operation failed.")
		return
	}
	c.reply(codePathCreated, quote(p)+" created")
}

func (c *session) rmd(arg string) {
	if err := c.srv.FS.rmdir(c.abs(arg)); err != nil {
		c.reply(ftpctl.CodeFileUnavailable, "Remove directory operation failed.")
		return
	}
	c.reply(ftpctl.CodeFileActionOK, "Remove directory operation successful.")
}

func (c *session) dele(arg string) {
	if err := c.srv.FS.remove(c.abs(arg)); err != nil {
		c.reply(ftpctl.CodeFileUnavailable, "Delete operation failed.")
		return
	}
	c.reply(ftpctl.CodeFileActionOK, "Delete operation successful.")
}

// rnfr remembers the source of a rename; dispatch forgets it unless RNTO
// comes next (RFC 959 section 4.1.3).
func (c *session) rnfr(arg string) {
	p := c.abs(arg)
	if _, err := c.srv.FS.stat(p); err != nil || p == "/" {
		c.reply(ftpctl.CodeFileUnavailable, "RNFR command failed.")
		return
	}
	c.renameFrom = p
	c.reply(ftpctl.CodePending, "Ready for RNTO.")
}

func (c *session) rnto(arg string) {
	from := c.renameFrom
	c.renameFrom = ""
	if from == "" {
		c.reply(codeCmdNotAllowed, "RNFR required first.")
		return
	}
	if err := c.srv.FS.rename(from, c.abs(arg)); err != nil {
		c.reply(ftpctl.CodeFileUnavailable, "Rename failed.")
		return
	}
	c.reply(ftpctl.CodeFileActionOK, "Rename successful.")
}

// size answers SIZE (RFC 3659 section 4): the bytes a RETR would send.
func (c *session) size(arg string) {
	n, err := c.srv.FS.stat(c.abs(arg))
	if err != nil || n.dir {
		c.reply(ftpctl.CodeFileUnavailable, "Could not get file size.")
		return
	}
	c.reply(ftpctl.CodeFileStatus, strconv.Itoa(len(n.data)))
}

// mdtm answers MDTM (RFC 3659 section 3) in UTC.
func (c *session) mdtm(arg string) {
	n, err := c.srv.FS.stat(c.abs(arg))
	if err != nil || n.dir {
		c.reply(ftpctl.CodeFileUnavailable, "Could not get file modification time.")
		return
	}
	c.reply(ftpctl.CodeFileStatus, n.mod.UTC().Format(timeFormat))
}

// mlst answers MLST (RFC 3659 section 7) on the control connection; the
// entry line starts with a space.
func (c *session) mlst(arg string) {
	p := c.cwd
	if arg != "" {
		p = c.abs(arg)
	}
	n, err := c.srv.FS.stat(p)
	if err != nil {
		c.reply(ftpctl.CodeFileUnavailable, "No such file or directory.")
		return
	}
	c.send(ftpctl.Reply{Code: ftpctl.CodeFileActionOK, Lines: []string{
		"Listing " + p,
		" " + factLine(p, n, c.facts),
		"End",
	}})
}

// Data connection setup.

// pasvCmd answers PASV (RFC 959 section 4.1.1) with PASVAddress, or the
// control connection's local address, and a new listener's port.
func (c *session) pasvCmd(string) {
	if c.srv.DisablePassive {
		c.reply(ftpctl.CodeNotImplemented, "Command not implemented.")
		return
	}
	if c.epsvAll {
		c.reply(codeCmdNotAllowed, "PASV not allowed after EPSV ALL.")
		return
	}
	addr := c.srv.PASVAddress.Unmap()
	if !addr.IsValid() {
		addr = c.local
	}
	if !addr.Is4() {
		c.reply(ftpctl.CodeNetProtoNotSupp, "PASV needs IPv4; use EPSV.")
		return
	}
	p, ok := c.newPassive()
	if !ok {
		return
	}
	c.reply(ftpctl.CodeEnteringPassive, ftpctl.FormatPASV(netip.AddrPortFrom(addr, p.port())))
}

// epsv answers EPSV and EPSV ALL (RFC 2428 section 3).
func (c *session) epsv(arg string) {
	if c.srv.DisableEPSV || c.srv.DisablePassive {
		c.reply(ftpctl.CodeNotImplemented, "Command not implemented.")
		return
	}
	switch strings.ToUpper(strings.TrimSpace(arg)) {
	case "":
	case "ALL":
		c.epsvAll = true
		c.reply(ftpctl.CodeOK, "EPSV ALL ok.")
		return
	case "1":
		if !c.local.Is4() {
			c.reply(ftpctl.CodeNetProtoNotSupp, "Network protocol not supported, use (2)")
			return
		}
	case "2":
		if c.local.Is4() {
			c.reply(ftpctl.CodeNetProtoNotSupp, "Network protocol not supported, use (1)")
			return
		}
	default:
		c.reply(ftpctl.CodeArgSyntaxError, "Bad network protocol.")
		return
	}
	p, ok := c.newPassive()
	if !ok {
		return
	}
	c.reply(ftpctl.CodeEnteringExtPassive, ftpctl.FormatEPSV(p.port()))
}

// newPassive replaces the data connection setup with a new passive
// listener, replying 425 if it cannot be opened.
func (c *session) newPassive() (*passive, bool) {
	c.closePassive()
	c.port = netip.AddrPort{}
	p, err := c.listenPassive()
	if err != nil {
		c.reply(ftpctl.CodeCannotOpenData, "Cannot open passive connection.")
		return nil, false
	}
	c.pasv = p
	return p, true
}

// portCmd answers PORT (RFC 959 section 4.1.2).
func (c *session) portCmd(arg string) {
	if c.srv.DisableActive {
		c.reply(ftpctl.CodeNotImplemented, "Command not implemented.")
		return
	}
	if c.epsvAll {
		c.reply(codeCmdNotAllowed, "PORT not allowed after EPSV ALL.")
		return
	}
	ap, err := ftpctl.ParsePORT(arg)
	if err != nil {
		c.reply(ftpctl.CodeArgSyntaxError, "Illegal PORT command.")
		return
	}
	c.setActive(ap, "PORT")
}

// eprt answers EPRT (RFC 2428 section 2).
func (c *session) eprt(arg string) {
	if c.srv.DisableActive {
		c.reply(ftpctl.CodeNotImplemented, "Command not implemented.")
		return
	}
	if c.epsvAll {
		c.reply(codeCmdNotAllowed, "EPRT not allowed after EPSV ALL.")
		return
	}
	ap, err := ftpctl.ParseEPRT(arg)
	if err != nil {
		if f, ok := eprtFamily(arg); ok && f != "1" && f != "2" {
			c.reply(ftpctl.CodeNetProtoNotSupp, "Network protocol not supported, use (1,2)")
			return
		}
		c.reply(ftpctl.CodeArgSyntaxError, "Illegal EPRT command.")
		return
	}
	if ap.Addr().Is4() != c.remote.Is4() {
		fam := "(2)"
		if c.remote.Is4() {
			fam = "(1)"
		}
		c.reply(ftpctl.CodeNetProtoNotSupp, "Network protocol not supported, use "+fam)
		return
	}
	c.setActive(ap, "EPRT")
}

// eprtFamily returns the network protocol field of an EPRT argument that has
// the shape "|x|y|z|" (RFC 2428 section 2).
func eprtFamily(arg string) (string, bool) {
	arg = strings.TrimSpace(arg)
	if len(arg) < 4 || arg[0] != arg[len(arg)-1] {
		return "", false
	}
	f := strings.Split(arg[1:len(arg)-1], arg[:1])
	if len(f) != 3 {
		return "", false
	}
	return f[0], true
}

// setActive records an active data address. Like vsftpd
// (port_promiscuous=NO) it refuses an address other than the client's, and
// privileged ports: the FTP bounce attack, RFC 2577 section 3.
func (c *session) setActive(ap netip.AddrPort, verb string) {
	if ap.Addr().Unmap() != c.remote || ap.Port() < 1024 {
		c.reply(ftpctl.CodeSyntaxError, "Illegal "+verb+" command.")
		return
	}
	c.closePassive()
	c.port = ap
	c.reply(ftpctl.CodeOK, verb+" command successful. Consider using PASV.")
}

// restCmd answers REST (RFC 3659 section 5): the offset applies to the next
// RETR or STOR.
func (c *session) restCmd(arg string) {
	n, err := strconv.ParseInt(strings.TrimSpace(arg), 10, 64)
	if err != nil || n < 0 {
		c.reply(ftpctl.CodeArgSyntaxError, "Invalid REST parameter.")
		return
	}
	c.rest = n
	c.reply(ftpctl.CodePending, "Restart position accepted ("+strconv.FormatInt(n, 10)+").")
}

// Transfers.

// prepareTransfer takes the data connection setup and the REST offset for a
// transfer command, replying 425 if there is no setup.
func (c *session) prepareTransfer() (dataSetup, int64, bool) {
	d, ok := c.takeData()
	off := c.rest
	c.rest = 0
	if !ok {
		c.reply(ftpctl.CodeCannotOpenData, "Use PORT or PASV first.")
	}
	return d, off, ok
}

// retr sends a file, from the REST offset on.
func (c *session) retr(arg string) {
	d, off, ok := c.prepareTransfer()
	if !ok {
		return
	}
	n, err := c.srv.FS.stat(c.abs(arg))
	if err != nil || n.dir {
		d.discard()
		c.reply(ftpctl.CodeFileUnavailable, "Failed to open file.")
		return
	}
	if off > int64(len(n.data)) {
		d.discard()
		c.reply(codeBadRest, "Invalid REST parameter.")
		return
	}
	data := n.data[off:]
	c.startTransfer(d, job{
		opening: fmt.Sprintf("Opening BINARY mode data connection for %s (%d bytes).", arg, len(data)),
		move:    func(conn net.Conn) error { return sendData(conn, data) },
		okText:  "Transfer complete.",
		failMsg: "Failure writing network stream.",
	})
}

// uploadKind tells STOR, APPE and STOU apart.
type uploadKind uint8

const (
	stor uploadKind = iota
	appe
	stou
)

// upload receives a file. What arrived is stored when the data connection
// ends, also after an abort or a data error, as vsftpd leaves a partial file.
func (c *session) upload(arg string, kind uploadKind) {
	d, off, ok := c.prepareTransfer()
	if !ok {
		return
	}
	var p string
	opening := "Ok to send data."
	if kind == stou {
		p = c.srv.FS.uniqueName(c.cwd)
		opening = "FILE: " + path.Base(p) // RFC 1123 section 4.1.2.9
	} else {
		p = c.abs(arg)
	}
	if err := c.srv.FS.checkWritable(p); err != nil {
		d.discard()
		c.reply(codeNameNotAllwd, "Could not create file.")
		return
	}
	if kind != stor {
		off = 0
	}
	if off > 0 {
		if n, err := c.srv.FS.stat(p); err != nil || off > int64(len(n.data)) {
			d.discard()
			c.reply(codeBadRest, "Invalid REST parameter.")
			return
		}
	}
	var buf bytes.Buffer
	move := func(conn net.Conn) error { return receiveData(conn, &buf) }
	if c.srv.DiscardUploads {
		move = discardData
	}
	c.startTransfer(d, job{
		opening: opening,
		move:    move,
		finish: func(error) error {
			return c.srv.FS.store(p, buf.Bytes(), off, kind == appe)
		},
		okText:  "Transfer complete.",
		failMsg: "Failure reading network stream.",
	})
}

// listKind tells LIST, NLST and MLSD apart.
type listKind uint8

const (
	listLong  listKind = iota // LIST: ls -l lines
	listNames                 // NLST: names only
	listFacts                 // MLSD: RFC 3659 facts
)

// list sends a directory listing, each line ending in CRLF.
func (c *session) list(arg string, kind listKind) {
	d, _, ok := c.prepareTransfer()
	if !ok {
		return
	}
	target := arg
	if kind != listFacts {
		target = listPath(arg)
	}
	l, err := c.resolveListing(target)
	switch {
	case err != nil:
		d.discard()
		c.reply(ftpctl.CodeFileUnavailable, "No such file or directory.")
		return
	case kind == listFacts && l.single:
		// RFC 3659 section 7.2.1: MLSD lists directories only.
		d.discard()
		c.reply(ftpctl.CodeArgSyntaxError, "Not a directory.")
		return
	}
	var b bytes.Buffer
	now := time.Now()
	for _, e := range l.entries {
		switch kind {
		case listLong:
			b.WriteString(lsLine(e.name, e.node, now))
		case listNames:
			b.WriteString(e.name)
		case listFacts:
			b.WriteString(factLine(e.name, e.node, c.facts))
		}
		b.WriteString("\r\n")
	}
	data := b.Bytes()
	c.startTransfer(d, job{
		opening: "Here comes the directory listing.",
		move:    func(conn net.Conn) error { return sendData(conn, data) },
		okText:  "Directory send OK.",
		failMsg: "Failure writing network stream.",
	})
}
