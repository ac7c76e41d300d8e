package proxy

import (
	"crypto/tls"
	"slices"
	"strings"
	"sync"
	"time"
)

// Status is a snapshot of what a Server is doing, for a status page. It is
// a copy: the caller may keep it and read it at leisure.
//
//	st := srv.Status()
//	for _, s := range st.Sessions {
//		if t := s.Transfer; t != nil {
//			fmt.Println(s.User, t.Verb, t.Path, t.Bytes)
//		}
//	}
type Status struct {
	Started      time.Time       // when the Server was built
	Now          time.Time       // when the snapshot was taken
	Backends     []BackendStatus // every pool's, the default pool first, in configuration order
	Sessions     []SessionStatus // live sessions, oldest first
	Recent       []TransferEvent // the last ended transfers, newest first
	PassivePorts int             // passive ports held now
}

// BackendStatus is one backend of one pool.
type BackendStatus struct {
	Pool     string // "default", or the route's name
	Name     string
	Address  string
	Weight   int
	Healthy  bool  // taking new sessions: not down, not ejected
	Down     bool  // marked down by health checks
	Ejected  bool  // left out for a while after a session failed to reach it
	Sessions int64 // live sessions relayed to it
	// BytesDown and BytesUp are the data bytes relayed from and to it since
	// the Server started, transfers in progress included.
	BytesDown, BytesUp int64
	LastCheck          time.Time // the last health check's end; zero before the first
	CheckError         string    // why the last check failed; "" when it passed
}

// SessionStatus is one live client session.
type SessionStatus struct {
	ID       string // as in the log records
	Client   string // host:port
	Listener string // "explicit" or "implicit"
	Started  time.Time
	Phase    string // "connected", "named", "account", "logged-in" (login.go)
	User     string // as given to USER; "" before
	Backend  string // the backend's name; "" before USER
	SNI      string
	// TLSVersion and Cipher are the control connection's; "" without TLS.
	TLSVersion, Cipher string
	Resumed            bool // the control TLS session was resumed
	Transfers          int  // ended transfers
	// BytesDown and BytesUp count the data of ended transfers.
	BytesDown, BytesUp int64
	Transfer           *TransferStatus // the transfer in progress, if any
}

// TransferStatus is a transfer in progress.
type TransferStatus struct {
	Verb      string // RETR, STOR, LIST...
	Path      string // as the client sent it
	Direction string // "download" or "upload"
	Prot      string // "C" or "P"
	Bytes     int64  // relayed so far
	Started   time.Time
}

// recentTransfers is how many ended transfers Status reports.
const recentTransfers = 50

// transferRing keeps the last ended transfers.
type transferRing struct {
	mu   sync.Mutex
	buf  [recentTransfers]TransferEvent // guarded by mu
	next int                            // where the next one goes; guarded by mu
	n    int                            // how many buf holds; guarded by mu
}

func (r *transferRing) add(e TransferEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = e
	r.next = (r.next + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
}

// newestFirst returns a copy of the ring, the latest transfer first.
func (r *transferRing) newestFirst() []TransferEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]TransferEvent, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// sessionView is what the status page may see of a session: a copy the
// session goroutine publishes after each command, since its own fields are
// read and written without a lock.
type sessionView struct {
	phase              phase
	user, sni          string
	member             *member
	tlsVersion, cipher uint16
	resumed            bool
	transfers          int
	bytesDown, bytesUp int64
	xfer               *liveTransfer
}

// liveTransfer is the transfer a session is running.
type liveTransfer struct {
	verb, path string
	dir        direction
	prot       byte
	started    time.Time
	dc         *dataChannel // its moved counters show progress
}

// publish copies the session's state where Status reads it. Only the
// session goroutine calls it.
func (s *session) publish() {
	v := sessionView{
		phase: s.phase, user: s.user, sni: s.sni, member: s.member,
		tlsVersion: s.tlsVersion, cipher: s.cipher, resumed: s.resumed,
		transfers: s.transfers, bytesDown: s.bytesDown, bytesUp: s.bytesUp,
	}
	s.viewMu.Lock()
	v.xfer = s.view.xfer
	s.view = v
	s.viewMu.Unlock()
}

// showTransfer publishes the transfer in progress, or its end (nil).
func (s *session) showTransfer(t *liveTransfer) {
	s.viewMu.Lock()
	s.view.xfer = t
	s.viewMu.Unlock()
}

func (s *session) snapshot() sessionView {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	return s.view
}

// Status returns a snapshot of the backends, the live sessions and the
// last ended transfers. It takes no lock a session holds for long, so a
// status page may call it as often as it likes.
func (s *Server) Status() Status {
	now := time.Now()
	st := Status{Started: s.started, Now: now, Recent: s.recent.newestFirst(), PassivePorts: s.ports.inUseCount()}

	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()

	// Bytes of the transfers in progress, by backend and direction, so a
	// backend's totals grow during a long transfer too.
	moving := map[*member]*[2]int64{}
	for _, sess := range sessions {
		v := sess.snapshot()
		ss := SessionStatus{
			ID: sess.id, Client: sess.raw.RemoteAddr().String(), Listener: sess.kind.String(),
			Started: sess.started, Phase: v.phase.String(), User: v.user, SNI: v.sni,
			Resumed: v.resumed, Transfers: v.transfers, BytesDown: v.bytesDown, BytesUp: v.bytesUp,
		}
		if v.member != nil {
			ss.Backend = v.member.name()
		}
		if v.tlsVersion != 0 {
			ss.TLSVersion, ss.Cipher = tls.VersionName(v.tlsVersion), tls.CipherSuiteName(v.cipher)
		}
		if x := v.xfer; x != nil {
			n := x.dc.moved[x.dir].Load()
			ss.Transfer = &TransferStatus{Verb: x.verb, Path: x.path, Direction: x.dir.String(),
				Prot: string(x.prot), Bytes: n, Started: x.started}
			if v.member != nil {
				if moving[v.member] == nil {
					moving[v.member] = new([2]int64)
				}
				moving[v.member][x.dir] += n
			}
		}
		st.Sessions = append(st.Sessions, ss)
	}
	slices.SortFunc(st.Sessions, func(a, b SessionStatus) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})

	for _, p := range s.pools() {
		for _, m := range p.members {
			m.mu.Lock()
			last, checkErr, ejected := m.lastCheck, m.checkErr, now.Before(m.ejectedUntil)
			m.mu.Unlock()
			bs := BackendStatus{
				Pool: p.name, Name: m.name(), Address: m.Address, Weight: m.weight(),
				Down: m.down.Load(), Ejected: ejected, Sessions: m.active.Load(),
				BytesDown: m.bytesDown.Load(), BytesUp: m.bytesUp.Load(), LastCheck: last,
			}
			bs.Healthy = !bs.Down && !bs.Ejected
			if checkErr != nil {
				bs.CheckError = checkErr.Error()
			}
			if mv := moving[m]; mv != nil {
				bs.BytesDown += mv[download]
				bs.BytesUp += mv[upload]
			}
			st.Backends = append(st.Backends, bs)
		}
	}
	return st
}
