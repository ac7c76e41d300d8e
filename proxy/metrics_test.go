package proxy

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ftpsgate/ftpsgate/persist"
)

// scrape returns every sample of reg keyed by name{label="value",...}, the
// labels in the order Gather gives them (sorted by name).
func scrape(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + "{"
			for i, lp := range m.GetLabel() {
				if i > 0 {
					key += ","
				}
				key += lp.GetName() + "=" + `"` + lp.GetValue() + `"`
			}
			key += "}"
			out[key] = sampleValue(m)
		}
	}
	return out
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}

func TestMetricsSessionDeltas(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	var (
		mu     sync.Mutex
		events []TransferEvent
	)
	h := newHarness(t, func(c *Config) {
		c.Metrics = NewMetrics(reg)
		c.OnTransfer = func(e TransferEvent) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
		}
	}, nil)
	before := scrape(t, reg)
	if got := before[`ftpsgate_backend_up{backend="mem",pool="default"}`]; got != 1 {
		t.Errorf("backend_up before = %v, want 1", got)
	}
	if got := before[`ftpsgate_passive_ports_in_use{}`]; got != 0 {
		t.Errorf("passive_ports_in_use = %v, want 0", got)
	}

	c := h.dial()
	payload := bytes.Repeat([]byte("metrics "), 1000)
	if err := c.Stor("m.txt", bytes.NewReader(payload)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "backend session counted", func() bool {
		return scrape(t, reg)[`ftpsgate_backend_sessions_active{backend="mem",pool="default"}`] == 1
	})
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "session end counted", func() bool {
		return scrape(t, reg)[`ftpsgate_sessions_active{listener="explicit"}`] == 0 &&
			scrape(t, reg)[`ftpsgate_sessions_total{listener="explicit",reason="quit"}`] == 1
	})
	after := scrape(t, reg)

	deltas := []struct {
		key  string
		want float64
	}{
		{`ftpsgate_sessions_total{listener="explicit",reason="quit"}`, 1},
		{`ftpsgate_tls_handshakes_total{result="ok",resumed="false"}`, 1},
		{`ftpsgate_logins_total{result="success"}`, 1},
		{`ftpsgate_transfers_total{direction="upload",prot="P",result="ok"}`, 1},
		{`ftpsgate_transfer_bytes_total{direction="upload",prot="P"}`, float64(len(payload))},
		{`ftpsgate_backend_sessions_active{backend="mem",pool="default"}`, 0},
		{`ftpsgate_logins_total{result="failure"}`, 0},
	}
	for _, d := range deltas {
		if got := after[d.key] - before[d.key]; got != d.want {
			t.Errorf("%s: delta %v, want %v", d.key, got, d.want)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(events) != 1 {
		t.Fatalf("OnTransfer called %d times, want 1", len(events))
	}
	e := events[0]
	if e.Verb != "STOR" || e.Path != "m.txt" || e.Direction != "upload" || e.Bytes != int64(len(payload)) ||
		e.Prot != "P" || e.User != "alice" || e.Backend != "mem" || !e.Complete || e.Code != 226 ||
		!e.Client.IsLoopback() || e.Session == "" || time.Since(e.Time) > time.Minute {
		t.Errorf("TransferEvent = %+v", e)
	}
}

func TestMetricNamesRegistered(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	// Touch every vector so that Gather lists it.
	m.sessionStart(explicitTLS)
	m.sessionEnd(explicitTLS, "quit")
	m.handshake(true, false)
	m.login(true)
	m.transfer(TransferEvent{Direction: "download", Prot: "P", Complete: true})
	p := newPool("default", RoundRobin, []Backend{{Address: "127.0.0.1:1"}}, nil)
	m.check(p, p.members[0], nil)
	m.dialError(p, p.members[0])
	m.storeError("get")
	m.limitHit(limitSessions)
	m.proxyHeaderRefused("data")
	pins := persist.NewTable(0)
	pins.Set(context.Background(), "k", "b", 0)
	srv := &Server{ports: newPortAllocator(PortRange{}), store: pins}
	srv.gen.Store(&generation{pool: p})
	m.watch(srv)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName())
	}
	want := MetricNames()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("registered %v\nMetricNames %v", got, want)
	}
}

func TestMetricsNilSafe(t *testing.T) {
	t.Parallel()
	var m *Metrics
	m.sessionStart(implicitTLS)
	m.sessionEnd(implicitTLS, "quit")
	m.handshake(false, false)
	m.login(false)
	m.transfer(TransferEvent{})
	m.check(nil, nil, nil)
	m.dialError(nil, nil)
	m.storeError("set")
	m.limitHit(limitSessions)
	m.proxyHeaderRefused("explicit")
	m.watch(nil)
}

// downStore is an affinity store that cannot be reached, as Redis when it
// is down (issue 4: logged and counted, sessions go on by policy).
type downStore struct{}

var errStoreDown = errors.New("store down")

func (downStore) Get(context.Context, string) (string, bool, error) { return "", false, errStoreDown }
func (downStore) Set(context.Context, string, string, time.Duration) error {
	return errStoreDown
}
func (downStore) Delete(context.Context, string) error { return errStoreDown }
func (downStore) Len() int                             { return -1 }
func (downStore) Close() error                         { return nil }

func TestMetricsAffinityStoreErrors(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(c *Config) {
		c.Metrics = NewMetrics(reg)
		c.Balance.Affinity = SourceAffinity
		c.Balance.Store = downStore{}
	}, nil)
	h.dial()
	got := scrape(t, reg)
	for _, key := range []string{`ftpsgate_affinity_store_errors_total{op="get"}`, `ftpsgate_affinity_store_errors_total{op="set"}`} {
		if got[key] != 1 {
			t.Errorf("%s = %v, want 1", key, got[key])
		}
	}
	if _, ok := got[`ftpsgate_affinity_pins{}`]; ok {
		t.Error("ftpsgate_affinity_pins reported for a store that cannot tell")
	}
}
