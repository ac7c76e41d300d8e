package persist

import (
	"fmt"
	"testing"
)

func TestRendezvousStable(t *testing.T) {
	members := []string{"ftp-a:21", "ftp-b:21", "ftp-c:21"}
	// Fixed values: a change of hash function would split a fleet of
	// instances of different versions, so it must be a deliberate one.
	for key, want := range map[string]int{"203.0.113.7": 2, "198.51.100.1": 1, "alice": 2, "bob": 2} {
		if got := Rendezvous(key, members); got != want {
			t.Errorf("Rendezvous(%q) = %d, want %d", key, got, want)
		}
	}
	if Rendezvous("x", nil) != -1 {
		t.Error("no members: want -1")
	}
}

func TestRendezvousSpreadAndMinimalMovement(t *testing.T) {
	members := []string{"a", "b", "c", "d"}
	counts := make([]int, len(members))
	before := map[string]int{}
	const n = 20000
	for i := range n {
		key := fmt.Sprintf("10.0.%d.%d", i/256, i%256)
		m := Rendezvous(key, members)
		counts[m]++
		before[key] = m
	}
	for i, c := range counts {
		if c < n/len(members)*8/10 || c > n/len(members)*12/10 {
			t.Errorf("member %s got %d of %d keys: uneven", members[i], c, n)
		}
	}
	// Remove "c": only its keys move, and they spread over the rest.
	rest := []string{"a", "b", "d"}
	for key, was := range before {
		now := rest[Rendezvous(key, rest)]
		if members[was] != "c" && now != members[was] {
			t.Fatalf("key %s moved from %s to %s though %s is still there", key, members[was], now, members[was])
		}
	}
}
