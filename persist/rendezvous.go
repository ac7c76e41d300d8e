package persist

import (
	"hash/fnv"
	"math"
)

// Rendezvous returns the index of the member with the highest score for
// key, or -1 when there are no members. Removing a member moves only the
// keys that were on it; adding one takes about 1/n of the keys, from every
// member evenly.
func Rendezvous(key string, members []string) int {
	best, bestScore := -1, uint64(0)
	for i, m := range members {
		s := score(key, m)
		if best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// RendezvousWeighted is [Rendezvous] with a weight per member: member i
// gets about weights[i]/sum(weights) of the keys. It returns the index of
// the chosen member, or -1 when no member has a positive weight.
//
// A member with a weight <= 0 is never chosen. A member past the end of
// weights has weight 1, so nil weights choose among all members alike.
// Equal weights (any positive value) choose exactly as Rendezvous does, so
// instances can move from one to the other without moving a client, and
// multiplying every weight by the same factor changes nothing.
//
// Movement is minimal: raising a member's weight only moves keys to it,
// lowering it only moves keys away from it, and removing a member (or
// setting its weight to 0) only moves the keys it had.
//
// The score is the standard weighted HRW score -w/ln(u), with u in (0, 1)
// drawn from the same fixed hash as Rendezvous. It is computed in float64:
// instances on different CPU architectures could in theory disagree on a
// key whose two best scores are within a rounding error of each other, a
// vanishingly rare case.
func RendezvousWeighted(key string, members []string, weights []int) int {
	best, bestScore, bestHash := -1, 0.0, uint64(0)
	for i, m := range members {
		w := 1
		if i < len(weights) {
			w = weights[i]
		}
		if w <= 0 {
			continue
		}
		h := score(key, m)
		s := weightedScore(h, w)
		// On a tie of scores the higher hash wins, as in Rendezvous: with
		// equal weights the two functions agree on every key.
		if best < 0 || s > bestScore || (s == bestScore && h > bestHash) {
			best, bestScore, bestHash = i, s, h
		}
	}
	return best
}

// weightedScore is -w/ln(u) for u = (h's top 53 bits + 0.5) / 2^53, which
// lies strictly inside (0, 1), so the logarithm is finite and negative. For
// a fixed w the score grows with h.
func weightedScore(h uint64, w int) float64 {
	u := (float64(h>>11) + 0.5) / (1 << 53)
	return -float64(w) / math.Log(u)
}

// score hashes member and key with a fixed function (no per-process seed),
// so that every instance, on every machine and version, scores alike.
func score(key, member string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(member))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return mix(h.Sum64())
}

// mix is the splitmix64 finalizer: FNV alone barely separates keys that
// differ in their last byte (10.0.0.1 and 10.0.0.2).
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
