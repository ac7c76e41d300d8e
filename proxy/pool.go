package proxy

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/persist"
)

// Policy is how a pool chooses a backend for a new session.
type Policy uint8

const (
	RoundRobin Policy = iota // in turn, smoothly weighted
	LeastConn                // fewest live sessions per unit of weight
	Random                   // weighted random
	SourceHash               // rendezvous hash of the client IP: every instance agrees
	UserHash                 // rendezvous hash of the user name: every instance agrees
)

var policyNames = []string{"round_robin", "least_conn", "random", "source_hash", "user_hash"}

func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("Policy(%d)", p)
}

// ParsePolicy parses a policy name as the configuration spells it.
func ParsePolicy(s string) (Policy, error) {
	if i := slices.Index(policyNames, s); i >= 0 {
		return Policy(i), nil
	}
	return 0, fmt.Errorf("proxy: policy %q: want one of %s", s, strings.Join(policyNames, ", "))
}

// pool is one set of backends with its policy: the default pool, or a
// route's.
type pool struct {
	name    string
	policy  Policy
	members []*member

	mu sync.Mutex // guards the members' rrCurrent
}

// member is a backend of a pool with what the proxy knows of it.
type member struct {
	Backend
	*backendState
	rrCurrent int // smooth weighted round robin state; guarded by pool.mu
}

// backendState is what the proxy learns about a backend over time. A reload
// that keeps a backend (same pool, name and address) hands the new member
// the same state, so its health, ejection and live-session count carry on
// while old and new sessions share it.
type backendState struct {
	active atomic.Int64 // live sessions
	down   atomic.Bool  // failed its health checks
	// data bytes relayed from and to it by ended transfers, for Status
	bytesDown, bytesUp atomic.Int64

	mu           sync.Mutex
	fails, rises int       // consecutive health check results; guarded by mu
	ejectedUntil time.Time // passive ejection after failed sessions; guarded by mu
	backoff      time.Duration
	// features are the backend's FEAT lines, nil while unknown;
	// featuresFrom says who learnt them last (featureSource). Guarded by
	// mu.
	features     []string
	featuresFrom string
	lastCheck    time.Time // the last health check's end; guarded by mu
	checkErr     error     // its error; guarded by mu
}

// newPool builds a pool; a backend found in prev (the pool of the same name
// before a reload, or nil) keeps its state.
func newPool(name string, policy Policy, backends []Backend, prev *pool) *pool {
	p := &pool{name: name, policy: policy}
	for _, b := range backends {
		st := &backendState{}
		if prev != nil {
			if old := prev.lookup(b.name()); old != nil && old.Address == b.Address {
				st = old.backendState
			}
		}
		p.members = append(p.members, &member{Backend: b, backendState: st})
	}
	return p
}

func (m *member) weight() int { return max(m.Weight, 1) }

// available reports whether new sessions may be sent to m.
func (m *member) available(now time.Time) bool {
	if m.down.Load() {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return !now.Before(m.ejectedUntil)
}

// choice is what a policy is given to choose with.
type choice struct {
	clientIP string
	user     string
}

// candidates returns the members to try for a session, best first, at most
// limit of them: the policy's pick among the available members, then the
// other available ones in the policy's order of preference. When none is
// available, all are returned, as a last resort rather than a certain 421.
func (p *pool) candidates(c choice, limit int) []*member {
	now := time.Now()
	var avail []*member
	for _, m := range p.members {
		if m.available(now) {
			avail = append(avail, m)
		}
	}
	if len(avail) == 0 {
		avail = slices.Clone(p.members)
	}
	first := p.pick(avail, c)
	out := append(make([]*member, 0, len(avail)), first)
	rest := slices.DeleteFunc(avail, func(x *member) bool { return x == first })
	switch p.policy {
	case SourceHash, UserHash:
		// The next by hash, so every instance fails over alike too.
		for len(rest) > 0 {
			m := p.pick(rest, c)
			out = append(out, m)
			rest = slices.DeleteFunc(rest, func(x *member) bool { return x == m })
		}
	case LeastConn:
		slices.SortStableFunc(rest, func(a, b *member) int {
			return cmp.Compare(a.active.Load()*int64(b.weight()), b.active.Load()*int64(a.weight()))
		})
		out = append(out, rest...)
	default:
		// Round robin and random: the others in a random order, so the
		// failures of one backend do not all land on its neighbour.
		rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
		out = append(out, rest...)
	}
	return out[:min(len(out), limit)]
}

// pick applies the policy to a non-empty set of members; only round robin
// keeps state, advanced once per session.
func (p *pool) pick(ms []*member, c choice) *member {
	switch p.policy {
	case LeastConn:
		start := rand.IntN(len(ms)) // ties go round, not always to the first
		best := ms[start]
		for i := 1; i < len(ms); i++ {
			m := ms[(start+i)%len(ms)]
			// a/wa < b/wb without division
			if m.active.Load()*int64(best.weight()) < best.active.Load()*int64(m.weight()) {
				best = m
			}
		}
		return best
	case Random:
		total := 0
		for _, m := range ms {
			total += m.weight()
		}
		n := rand.IntN(total)
		for _, m := range ms {
			if n -= m.weight(); n < 0 {
				return m
			}
		}
		return ms[len(ms)-1]
	case SourceHash, UserHash:
		key := c.clientIP
		if p.policy == UserHash {
			key = c.user
		}
		names := make([]string, len(ms))
		weights := make([]int, len(ms))
		for i, m := range ms {
			names[i], weights[i] = m.name(), m.weight()
		}
		return ms[persist.RendezvousWeighted(key, names, weights)]
	}
	// Smooth weighted round robin (as nginx): every member's credit grows by
	// its weight, the richest is chosen and pays the total. Equal weights
	// give strict rotation; 5:1:1 gives a a b a c a a, not a a a a a b c.
	p.mu.Lock()
	defer p.mu.Unlock()
	total := 0
	var best *member
	for _, m := range ms {
		m.rrCurrent += m.weight()
		total += m.weight()
		if best == nil || m.rrCurrent > best.rrCurrent {
			best = m
		}
	}
	best.rrCurrent -= total
	return best
}

// lookup returns the member named name, or nil.
func (p *pool) lookup(name string) *member {
	for _, m := range p.members {
		if m.name() == name {
			return m
		}
	}
	return nil
}

// commonFeatures returns the FEAT lines every backend of the pool announced
// in its last health check, so the proxy never advertises what a session's
// backend might lack. ok is false while some backend's features are unknown.
func (p *pool) commonFeatures() (feats []string, ok bool) {
	for i, m := range p.members {
		m.mu.Lock()
		mf := m.features
		m.mu.Unlock()
		if mf == nil {
			return nil, false
		}
		if i == 0 {
			feats = slices.Clone(mf)
			continue
		}
		feats = slices.DeleteFunc(feats, func(f string) bool {
			return !slices.ContainsFunc(mf, func(g string) bool { return strings.EqualFold(f, g) })
		})
	}
	return feats, true
}

// learnFeatures records the features someone (from: a featureSource)
// learnt of m, and reports whether they are news: the first, or other than
// the last.
func (m *member) learnFeatures(feats []string, from string) (news bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	news = m.features == nil || !slices.Equal(m.features, feats)
	m.features, m.featuresFrom = feats, from
	return news
}

// knowsFeatures reports whether m's features are known.
func (m *member) knowsFeatures() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.features != nil
}

// supports reports whether m announced feature name (e.g. "HOST"); unknown
// features count as supported, so that trying costs one refused command.
func (m *member) supports(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.features == nil {
		return true
	}
	return slices.ContainsFunc(m.features, func(f string) bool { return ftpctl.FeatureName(f) == name })
}

// Route sends the sessions it matches to its own backends. Every criterion
// given must match; a route with none is refused by Validate.
type Route struct {
	Name     string
	SNI      []string // TLS server names; "*.example.com" matches one label
	Host     []string // HOST command arguments (RFC 7151), case-insensitive
	User     []string // user name patterns (path.Match syntax: "partner-*")
	Backends []Backend
	Policy   Policy // zero: round_robin
}

type route struct {
	Route
	pool *pool
}

// matches reports whether a session with these attributes belongs to r.
// user may be empty before USER; then a route that needs a user does not
// match.
func (r *route) matches(sni, host, user string) bool {
	if len(r.SNI) > 0 && !slices.ContainsFunc(r.SNI, func(p string) bool { return matchName(p, sni) }) {
		return false
	}
	if len(r.Host) > 0 && !slices.ContainsFunc(r.Host, func(p string) bool { return matchName(p, host) }) {
		return false
	}
	if len(r.User) > 0 && !slices.ContainsFunc(r.User, func(p string) bool {
		ok, _ := path.Match(p, user)
		return ok && user != ""
	}) {
		return false
	}
	return true
}

// matchName matches a host name against a pattern, case-insensitively;
// "*.example.com" matches exactly one more label, as in certificates.
func matchName(pattern, name string) bool {
	if name == "" {
		return false
	}
	pattern, name = strings.ToLower(pattern), strings.ToLower(strings.TrimSuffix(name, "."))
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		label, domain, found := strings.Cut(name, ".")
		return found && label != "" && domain == rest
	}
	return pattern == name
}
