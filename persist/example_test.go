package persist_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ftpsgate/ftpsgate/persist"
)

func ExampleOpenFile() {
	dir, _ := os.MkdirTemp("", "ftpsgate")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "pins")
	ctx := context.Background()

	store, err := persist.OpenFile(path, 0) // missing: empty, no error
	fmt.Println(store.Len(), err)
	store.Set(ctx, "ip:203.0.113.7", "ftp-a", 30*time.Minute)
	store.Close() // saves

	store, err = persist.OpenFile(path, 0) // after a restart
	backend, ok, _ := store.Get(ctx, "ip:203.0.113.7")
	fmt.Println(backend, ok, err)
	// Output:
	// 0 <nil>
	// ftp-a true <nil>
}

func ExampleRendezvousWeighted() {
	backends := []string{"ftp-a:21", "ftp-b:21", "ftp-c:21"}
	weights := []int{1, 1, 2} // ftp-c takes half of the clients
	i := persist.RendezvousWeighted("203.0.113.7", backends, weights)
	fmt.Println(backends[i])
	// Output: ftp-c:21
}

func ExampleTable() {
	pins := persist.NewTable(2) // at most two pins
	ctx := context.Background()
	pins.Set(ctx, "user:alice", "ftp-a", 0)
	pins.Set(ctx, "user:bob", "ftp-b", 0)
	pins.Get(ctx, "user:alice")             // alice is now the most recently used
	pins.Set(ctx, "user:carol", "ftp-c", 0) // evicts bob
	_, bob, _ := pins.Get(ctx, "user:bob")
	_, alice, _ := pins.Get(ctx, "user:alice")
	fmt.Println(pins.Len(), bob, alice)
	// Output: 2 false true
}
