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

// clientKeys returns n distinct client addresses.
func clientKeys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	return ks
}

func TestRendezvousWeightedStable(t *testing.T) {
	t.Parallel()
	members := []string{"ftp-a:21", "ftp-b:21", "ftp-c:21"}
	// Fixed values, as in TestRendezvousStable: instances of different
	// versions must agree.
	for _, tc := range []struct {
		key     string
		weights []int
		want    int
	}{
		{"203.0.113.7", []int{1, 2, 3}, 2},
		{"198.51.100.1", []int{1, 2, 3}, 1},
		{"carol", []int{1, 2, 3}, 2},
		{"203.0.113.7", []int{5, 1, 1}, 0},
		{"10.0.0.1", []int{5, 1, 1}, 2},
	} {
		if got := RendezvousWeighted(tc.key, members, tc.weights); got != tc.want {
			t.Errorf("RendezvousWeighted(%q, %v) = %d, want %d", tc.key, tc.weights, got, tc.want)
		}
	}
}

func TestRendezvousWeightedEdges(t *testing.T) {
	t.Parallel()
	ab := []string{"a", "b"}
	for _, tc := range []struct {
		name    string
		members []string
		weights []int
		want    int // -2: any member but not -1
	}{
		{"no members", nil, nil, -1},
		{"all weights zero", ab, []int{0, 0}, -1},
		{"negative weight never chosen", ab, []int{-5, 1}, 1},
		{"zero weight never chosen", ab, []int{1, 0}, 0},
		{"missing weights count as 1", ab, []int{0}, 1},
		{"nil weights", ab, nil, -2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range clientKeys(200) {
				got := RendezvousWeighted(k, tc.members, tc.weights)
				if tc.want == -2 && (got < 0 || got >= len(tc.members)) || tc.want != -2 && got != tc.want {
					t.Fatalf("RendezvousWeighted(%q, %v, %v) = %d, want %d", k, tc.members, tc.weights, got, tc.want)
				}
			}
		})
	}
}

// Equal weights must choose as Rendezvous does: a fleet can switch from
// unweighted to weighted hashing (or run both versions) without moving a
// single client.
func TestRendezvousWeightedEqualIsRendezvous(t *testing.T) {
	t.Parallel()
	members := []string{"ftp-a:21", "ftp-b:21", "ftp-c:21", "ftp-d:21", "ftp-e:21"}
	for _, w := range [][]int{nil, {1, 1, 1, 1, 1}, {7, 7, 7, 7, 7}, {1000000, 1000000, 1000000, 1000000, 1000000}} {
		for _, k := range clientKeys(20000) {
			if got, want := RendezvousWeighted(k, members, w), Rendezvous(k, members); got != want {
				t.Fatalf("weights %v, key %s: RendezvousWeighted = %d, Rendezvous = %d", w, k, got, want)
			}
		}
	}
}

func TestRendezvousWeightedProportions(t *testing.T) {
	t.Parallel()
	const n = 60000
	ks := clientKeys(n)
	for _, weights := range [][]int{
		{1, 1, 1},
		{1, 2, 3, 4},
		{5, 1, 1},
		{1, 0, 3},
		{100, 1},
		{2, 4, 6}, // as {1, 2, 3}
	} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			t.Parallel()
			members := make([]string, len(weights))
			total := 0
			for i, w := range weights {
				members[i] = fmt.Sprintf("ftp-%c:21", 'a'+i)
				total += w
			}
			counts := make([]int, len(members))
			for _, k := range ks {
				counts[RendezvousWeighted(k, members, weights)]++
			}
			for i, w := range weights {
				want := float64(n) * float64(w) / float64(total)
				// The hash is fixed, so this is deterministic; 6% of the
				// expected count (at least 60 keys) is several standard
				// deviations of a fair draw.
				if diff := float64(counts[i]) - want; diff > max(0.06*want, 60) || diff < -max(0.06*want, 60) {
					t.Errorf("member %d (weight %d) got %d of %d keys, want about %.0f", i, w, counts[i], n, want)
				}
			}
		})
	}
}

func TestRendezvousWeightedMinimalMovement(t *testing.T) {
	t.Parallel()
	const n = 40000
	ks := clientKeys(n)
	for _, tc := range []struct {
		name             string
		before, after    []string
		wBefore, wAfter  []int
		changed          string  // the only member keys may move to or from
		onlyTo, onlyFrom bool    // direction of the movement
		wantMoved        float64 // expected fraction of keys moved
	}{
		{"raise c 1->3", abc, abc, []int{1, 1, 1}, []int{1, 1, 3}, "c", true, false, 3.0/5 - 1.0/3},
		{"lower c 3->1", abc, abc, []int{1, 1, 3}, []int{1, 1, 1}, "c", false, true, 3.0/5 - 1.0/3},
		{"c weight to 0", abc, abc, []int{1, 2, 3}, []int{1, 2, 0}, "c", false, true, 3.0 / 6},
		{"remove c", abc, []string{"a", "b"}, []int{1, 2, 3}, []int{1, 2}, "c", false, true, 3.0 / 6},
		{"add d", abc, []string{"a", "b", "c", "d"}, []int{1, 2, 3}, []int{1, 2, 3, 6}, "d", true, false, 6.0 / 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			moved := 0
			for _, k := range ks {
				was := tc.before[RendezvousWeighted(k, tc.before, tc.wBefore)]
				now := tc.after[RendezvousWeighted(k, tc.after, tc.wAfter)]
				if was == now {
					continue
				}
				moved++
				if tc.onlyTo && now != tc.changed || tc.onlyFrom && was != tc.changed {
					t.Fatalf("key %s moved from %s to %s: only moves involving %s expected", k, was, now, tc.changed)
				}
			}
			got := float64(moved) / n
			if d := got - tc.wantMoved; d > 0.02 || d < -0.02 {
				t.Errorf("%.3f of the keys moved, want about %.3f", got, tc.wantMoved)
			}
		})
	}
}

var abc = []string{"a", "b", "c"}
