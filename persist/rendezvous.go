// Package persist keeps clients on the backend they were given: rendezvous
// (highest random weight) hashing, which lets every ftpsgate instance with
// the same configuration choose the same backend for a client without
// sharing any state, and later an affinity table that survives restarts.
//
//	i := persist.Rendezvous("203.0.113.7", []string{"ftp-a:21", "ftp-b:21"})
//	backend := backends[i]
//
// It never logs and starts no goroutines.
package persist

import "hash/fnv"

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
