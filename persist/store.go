package persist

import (
	"context"
	"time"
)

// Store keeps client→backend pins: a key naming the client ("ip:203.0.113.7",
// "user:alice") maps to the name of the backend it was given ("ftp-a").
// [Table], [FileStore] and [RedisStore] implement it; all are safe for
// concurrent use.
type Store interface {
	// Get returns the backend pinned to key. ok is false when there is no
	// pin or it has expired: expired pins are never returned. A non-nil
	// error means the store could not answer (Redis unreachable), not that
	// the key is unknown.
	Get(ctx context.Context, key string) (backend string, ok bool, err error)
	// Set pins key to backend for ttl, or refreshes the pin: the backend
	// and the expiry are replaced. A zero ttl means no expiry; a negative
	// ttl is a pin that has already expired, so any pin of key is removed.
	Set(ctx context.Context, key, backend string, ttl time.Duration) error
	// Delete removes the pin of key, if any.
	Delete(ctx context.Context, key string) error
	// Len returns the number of pins held, or -1 when the store cannot
	// tell cheaply (Redis). It is meant for metrics.
	Len() int
	// Close flushes the store (a FileStore saves its file) and releases
	// its resources.
	Close() error
}
