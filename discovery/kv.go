package discovery

import (
	"context"
	"log/slog"

	"github.com/hashicorp/consul/api"

	"github.com/meshgate/meshgate/config"
)

// KVEntry is one key under a watched Consul KV prefix.
type KVEntry struct {
	Key   string
	Value []byte
}

// WatchKV calls update with every key and value under prefix, at once and
// again whenever they change, until ctx is done: one blocking query on
// the prefix with the same discipline as the service watches (runWatch).
// Keys ending in "/" (folders) are left out. While Consul fails, update is
// not called, so the owner keeps what it had.
func WatchKV(ctx context.Context, client *api.Client, cc config.Consul, prefix string, log *slog.Logger, update func([]KVEntry)) {
	runWatch(ctx, watchOptionsOf(cc), queryOptionsOf(cc), watchHooks[api.KVPairs]{
		query: func(q *api.QueryOptions) (api.KVPairs, *api.QueryMeta, error) {
			return client.KV().List(prefix, q)
		},
		update: func(pairs api.KVPairs, _ uint64) {
			out := make([]KVEntry, 0, len(pairs))
			for _, p := range pairs {
				if p.Key == "" || p.Key[len(p.Key)-1] == '/' {
					continue
				}
				out = append(out, KVEntry{Key: p.Key, Value: p.Value})
			}
			update(out)
		},
		failed: func(err error, first bool) {
			if first {
				log.Warn("consul kv watch failing; keeping the last documents", "prefix", prefix, "error", err)
			}
		},
		recovered: func() {
			log.Info("consul kv watch recovered", "prefix", prefix)
		},
	})
}
