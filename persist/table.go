package persist

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxEntries is the size bound of a [Table] made with a maxEntries
// of zero or less: at about 150 bytes a pin, some 15 MB.
const DefaultMaxEntries = 100000

// Table is an in-memory pin table bounded in size, with least recently used
// eviction and a time to live per entry. It implements [Store]: the contexts
// are ignored and the errors are always nil.
//
// When a new pin would make the table exceed its bound, the least recently
// used pin is evicted; Get and Set count as uses. An expired pin is never
// returned; it is dropped when it is next looked up, when it is evicted as
// the least recently used, or by [Table.Purge] (a FileStore's Save purges
// too).
//
// A Table is safe for concurrent use. The zero Table is an empty table of
// [DefaultMaxEntries]. A Table must not be copied after first use.
type Table struct {
	// max is the size bound; <= 0 means DefaultMaxEntries.
	max int
	// now is the clock; nil means time.Now. Tests set it before use.
	now func() time.Time

	mu sync.Mutex // guards m and root
	m  map[string]*entry
	// root is the sentinel of the circular recency list: root.next is the
	// most recently used entry, root.prev the least.
	root entry
}

// entry is one pin, linked into the recency list.
type entry struct {
	pin
	prev, next *entry
}

// pin is a key pinned to a backend until expires; a zero expires is never.
type pin struct {
	key, backend string
	expires      time.Time
}

// expired reports whether p has expired at now.
func (p *pin) expired(now time.Time) bool {
	return !p.expires.IsZero() && !now.Before(p.expires)
}

// NewTable returns an empty table holding at most maxEntries pins; zero or
// less means [DefaultMaxEntries].
func NewTable(maxEntries int) *Table {
	return &Table{max: maxEntries}
}

// Get returns the backend pinned to key, if the pin exists and has not
// expired, and makes it the most recently used. err is always nil.
func (t *Table) Get(_ context.Context, key string) (backend string, ok bool, err error) {
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[key]
	if e == nil {
		return "", false, nil
	}
	if e.expired(now) {
		t.remove(e)
		return "", false, nil
	}
	t.toFront(e)
	return e.backend, true, nil
}

// Set pins key to backend for ttl (zero: no expiry; negative: remove the
// pin), or refreshes an existing pin, and makes it the most recently used.
// A new pin that makes the table exceed its bound evicts the least
// recently used one. err is always nil.
func (t *Table) Set(_ context.Context, key, backend string, ttl time.Duration) error {
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if ttl < 0 {
		if e := t.m[key]; e != nil {
			t.remove(e)
		}
		return nil
	}
	p := pin{key: key, backend: backend}
	if ttl > 0 {
		p.expires = now.Add(ttl)
	}
	t.put(p)
	return nil
}

// Delete removes the pin of key, if any. err is always nil.
func (t *Table) Delete(_ context.Context, key string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[key]; e != nil {
		t.remove(e)
	}
	return nil
}

// Len returns the number of pins held, counting expired pins that have not
// been dropped yet (see [Table.Purge]).
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// Purge drops every expired pin and returns how many it dropped. It walks
// the whole table: call it now and then (the proxy's save interval), not
// per session.
func (t *Table) Purge() int {
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.m {
		if e.expired(now) {
			t.remove(e)
			n++
		}
	}
	return n
}

// Close does nothing and returns nil: a Table holds no resources. The table
// stays usable.
func (t *Table) Close() error { return nil }

// clock returns the current time.
func (t *Table) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

// limit returns the size bound.
func (t *Table) limit() int {
	if t.max <= 0 {
		return DefaultMaxEntries
	}
	return t.max
}

// put inserts or replaces p as the most recently used pin, evicting the
// least recently used one if the table is over its bound. t.mu is held.
func (t *Table) put(p pin) {
	if t.m == nil {
		t.m = make(map[string]*entry)
		t.root.next, t.root.prev = &t.root, &t.root
	}
	if e := t.m[p.key]; e != nil {
		e.pin = p
		t.toFront(e)
		return
	}
	e := &entry{pin: p}
	t.m[p.key] = e
	t.link(e, &t.root)
	for len(t.m) > t.limit() {
		t.remove(t.root.prev)
	}
}

// toFront makes e the most recently used entry. t.mu is held.
func (t *Table) toFront(e *entry) {
	if t.root.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	t.link(e, &t.root)
}

// link inserts e after at. t.mu is held.
func (t *Table) link(e, at *entry) {
	e.prev, e.next = at, at.next
	at.next.prev = e
	at.next = e
}

// remove unlinks e and forgets its key. t.mu is held.
func (t *Table) remove(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(t.m, e.key)
}

// snapshot drops the expired pins and returns the others, the most
// recently used first.
func (t *Table) snapshot() []pin {
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	pins := make([]pin, 0, len(t.m))
	if t.m == nil {
		return pins
	}
	for e := t.root.next; e != &t.root; {
		next := e.next
		if e.expired(now) {
			t.remove(e)
		} else {
			pins = append(pins, e.pin)
		}
		e = next
	}
	return pins
}

// load replaces the contents of t with pins, given the most recently used
// first. Expired pins are skipped, and so are the least recently used ones
// beyond the bound.
func (t *Table) load(pins []pin) {
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m = make(map[string]*entry)
	t.root.next, t.root.prev = &t.root, &t.root
	for _, p := range pins {
		if len(t.m) >= t.limit() {
			break
		}
		if p.expired(now) || t.m[p.key] != nil {
			continue
		}
		e := &entry{pin: p}
		t.m[p.key] = e
		t.link(e, t.root.prev) // at the back: pins come most recent first
	}
}
