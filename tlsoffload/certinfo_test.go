package tlsoffload

import (
	"slices"
	"testing"
	"time"
)

// TestCertificates lists the files' certificates in order, or the
// self-signed one, with names and expiry.
func TestCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, ca := writePair(t, dir, "a", time.Hour, "a.example.com")
	b, cb := writePair(t, dir, "b", 2*time.Hour, "b.example.com", "*.b.example.com")
	o, err := New(Config{CertFile: a.CertFile, KeyFile: a.KeyFile, Certificates: []KeyPair{b}})
	if err != nil {
		t.Fatal(err)
	}
	got := o.Certificates()
	if len(got) != 2 {
		t.Fatalf("Certificates() = %+v, want two", got)
	}
	if got[0].Source != a.CertFile || !slices.Equal(got[0].Names, []string{"a.example.com"}) || !got[0].NotAfter.Equal(ca.Leaf.NotAfter) {
		t.Errorf("first: %+v", got[0])
	}
	if got[1].Source != b.CertFile || !slices.Equal(got[1].Names, []string{"b.example.com", "*.b.example.com"}) || !got[1].NotAfter.Equal(cb.Leaf.NotAfter) {
		t.Errorf("second: %+v", got[1])
	}

	o, err = New(Config{SelfSignedNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Certificates(); len(got) != 1 || got[0].Source != "self-signed" || !slices.Equal(got[0].Names, []string{"localhost"}) || got[0].NotAfter.IsZero() {
		t.Errorf("self-signed: %+v", got)
	}
}
