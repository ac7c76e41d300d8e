package persist

// This file is the one exception to "persist imports the standard library
// only" (DESIGN.md): issue 4 asks for a Redis store shared by a fleet of
// proxies, and github.com/redis/go-redis/v9 is the client it names.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultRedisPrefix is the prefix of the Redis keys of a [RedisStore]
// opened with an empty prefix.
const DefaultRedisPrefix = "ftpsgate:pin:"

// Timeouts of a [RedisStore], unless its URL sets others: a Redis that is
// down or frozen must cost a login a fraction of a second, not the
// go-redis defaults of 5 s per step and 3 retries.
const (
	// redisTimeout bounds each step: dial, read, write, waiting for a
	// pooled connection.
	redisTimeout = 200 * time.Millisecond
	// redisBudget bounds one whole Get, Set or Delete, retries included,
	// unless the URL's dial and read timeouts add up to more.
	redisBudget = 500 * time.Millisecond
)

// RedisStore is a [Store] that keeps its pins in Redis, so that every
// ftpsgate instance sharing the Redis honours every pin. A pin is a string
// key (the prefix followed by the pin's key) holding the backend's name;
// its expiry is the key's Redis TTL, so Redis drops expired pins itself.
//
// A RedisStore never blocks a caller for long: when Redis is down or
// frozen, Get, Set and Delete return an error after at most about half a
// second (less when the caller's context ends first), and work again
// within about a second of Redis being back. The caller should then choose a backend by its
// policy and log the error.
//
// The go-redis client keeps a pool of connections (and, after repeated
// dial failures, a goroutine that probes Redis once a second until it
// answers). go-redis also writes some failures (a failed dial) to its own
// logger, the standard library's log package by default; the program can
// redirect or silence it with redis.SetLogger.
//
// RedisStore is the one part of persist that imports a module outside the
// standard library, github.com/redis/go-redis/v9: DESIGN.md limits persist
// to the standard library, and issue 4 asks for go-redis for this store.
//
// A RedisStore is safe for concurrent use.
type RedisStore struct {
	client *redis.Client
	prefix string
	budget time.Duration // bound of one operation
}

// OpenRedis returns a store keeping its pins in the Redis at rawURL
// ("redis://[user:password@]host:port/db", or "rediss://" for TLS) under
// keys that start with prefix (empty: [DefaultRedisPrefix]). Instances that
// are to honour each other's pins use the same Redis database and prefix.
//
// OpenRedis does not contact Redis: a Redis that is down at start makes
// Get and Set fail until it is up, it does not stop the proxy. The error is
// for a URL that cannot be parsed.
//
// Dial, read, write and pool timeouts are 200 ms, and a failed command is
// retried once; the URL's query can set others, as go-redis reads them
// (dial_timeout=1s, read_timeout, write_timeout, pool_timeout,
// max_retries, protocol, ...).
func OpenRedis(rawURL string, prefix string) (*RedisStore, error) {
	opt, err := redisOptions(rawURL)
	if err != nil {
		return nil, err
	}
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	// A dial and a round trip, as the URL may set them; at least redisBudget.
	budget := max(redisBudget, opt.DialTimeout+opt.ReadTimeout)
	return &RedisStore{client: redis.NewClient(opt), prefix: prefix, budget: budget}, nil
}

// redisOptions parses rawURL and fills in our defaults where the URL's
// query sets nothing.
func redisOptions(rawURL string) (*redis.Options, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("persist: redis url: %w", err)
	}
	u, err := url.Parse(rawURL) // ParseURL accepted it: this cannot fail
	if err != nil {
		return nil, fmt.Errorf("persist: redis url: %w", err)
	}
	q := u.Query()
	for _, d := range []struct {
		name string
		v    *time.Duration
	}{
		{"dial_timeout", &opt.DialTimeout},
		{"read_timeout", &opt.ReadTimeout},
		{"write_timeout", &opt.WriteTimeout},
		{"pool_timeout", &opt.PoolTimeout},
	} {
		if !q.Has(d.name) {
			*d.v = redisTimeout
		}
	}
	if !q.Has("max_retries") {
		// One retry: a pooled connection may be dead after Redis
		// restarted, and the retry takes a fresh one.
		opt.MaxRetries = 1
		opt.MaxRetryBackoff = 50 * time.Millisecond
	}
	if !q.Has("protocol") {
		// RESP2 is all we need, and what every Redis-compatible server
		// speaks.
		opt.Protocol = 2
	}
	// One dial attempt per command: the command's retry is the second one.
	opt.DialerRetries = 1
	// Socket deadlines follow the caller's context when it ends sooner.
	opt.ContextTimeoutEnabled = true
	// Neither CLIENT SETINFO (Redis 7.2 and later) nor Redis Enterprise
	// maintenance notifications: nothing that can fail on an older or
	// plain server.
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return opt, nil
}

// Get returns the backend pinned to key. ok is false when there is no pin
// (Redis has dropped expired ones); err is non-nil when Redis could not
// answer within the store's time budget or ctx.
func (r *RedisStore) Get(ctx context.Context, key string) (backend string, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.budget)
	defer cancel()
	backend, err = r.client.Get(ctx, r.prefix+key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("persist: redis get: %w", err)
	}
	return backend, true, nil
}

// Set pins key to backend with a Redis TTL of ttl (rounded up to a whole
// millisecond; zero: no expiry; negative: the pin is deleted), or refreshes
// the pin.
func (r *RedisStore) Set(ctx context.Context, key, backend string, ttl time.Duration) error {
	if ttl < 0 {
		return r.Delete(ctx, key)
	}
	ctx, cancel := context.WithTimeout(ctx, r.budget)
	defer cancel()
	// Redis counts in milliseconds; go-redis would truncate a shorter TTL
	// with a log line.
	if rem := ttl % time.Millisecond; rem != 0 {
		ttl += time.Millisecond - rem
	}
	if err := r.client.Set(ctx, r.prefix+key, backend, ttl).Err(); err != nil {
		return fmt.Errorf("persist: redis set: %w", err)
	}
	return nil
}

// Delete removes the pin of key, if any.
func (r *RedisStore) Delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, r.budget)
	defer cancel()
	if err := r.client.Del(ctx, r.prefix+key).Err(); err != nil {
		return fmt.Errorf("persist: redis delete: %w", err)
	}
	return nil
}

// Len returns -1: counting the pins would mean scanning the Redis keyspace.
func (r *RedisStore) Len() int { return -1 }

// Close closes the connections to Redis. The pins stay in Redis, until
// their TTL. The store is not usable afterwards.
func (r *RedisStore) Close() error {
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("persist: redis close: %w", err)
	}
	return nil
}
