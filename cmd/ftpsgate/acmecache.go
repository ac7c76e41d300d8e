package main

import (
	"context"

	"golang.org/x/crypto/acme/autocert"

	"github.com/ftpsgate/ftpsgate/persist"
)

// acmePrefix keeps ACME cache entries apart from affinity pins in a Redis
// shared by both.
const acmePrefix = "ftpsgate:acme:"

// redisACMECache is an autocert.Cache in the Redis of a fleet, so that
// instances share the account and the certificates instead of each
// ordering its own (and meeting the CA's rate limits).
type redisACMECache struct {
	store *persist.RedisStore
}

func (c redisACMECache) Get(ctx context.Context, key string) ([]byte, error) {
	v, ok, err := c.store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, autocert.ErrCacheMiss
	}
	return []byte(v), nil
}

// Put keeps data without expiry: autocert renews what it finds expiring.
func (c redisACMECache) Put(ctx context.Context, key string, data []byte) error {
	return c.store.Set(ctx, key, string(data), 0)
}

func (c redisACMECache) Delete(ctx context.Context, key string) error {
	return c.store.Delete(ctx, key)
}
