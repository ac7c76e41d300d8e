// Package persist keeps clients on the backend they were given.
//
// Two mechanisms work together. Rendezvous (highest random weight) hashing
// lets every ftpsgate instance with the same configuration choose the same
// backend for a client without sharing any state. An affinity [Store]
// remembers the backend a client was actually given (after failover, after
// a least_conn choice), for a time to live:
//
//   - [Table]: in memory, bounded in size, least recently used pins evicted
//     first;
//   - [FileStore]: a Table saved atomically to a state file, so pins
//     survive a restart of the proxy;
//   - [RedisStore]: pins kept in Redis, so every instance of a fleet
//     honours every pin.
//
// Usage:
//
//	store, err := persist.OpenFile("/var/lib/ftpsgate/pins", 0)
//	if err != nil {
//		log.Warn().Err(err).Msg("affinity state not loaded") // store is empty but usable
//	}
//	defer store.Close() // saves
//
//	key := "ip:" + clientIP
//	backend, ok, err := store.Get(ctx, key)
//	if err != nil || !ok {
//		backend = names[persist.RendezvousWeighted(key, names, weights)]
//	}
//	err = store.Set(ctx, key, backend, 30*time.Minute) // pin or refresh
//
// The package never logs and starts no goroutines of its own; errors are
// returned for the caller to log. It imports the standard library only,
// except for the Redis store, which uses github.com/redis/go-redis/v9.
package persist
