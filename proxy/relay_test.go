package proxy

import (
	"testing"
	"time"
)

// TestNextChunk: a splice chunk holds about a tenth of the idle time's
// worth at the last chunk's pace, so that a slow link never outlasts the
// deadline set before its chunk, and a fast one moves megabytes a call.
func TestNextChunk(t *testing.T) {
	for _, c := range []struct {
		moved      int64
		took, idle time.Duration
		want       int64
	}{
		{256 << 10, time.Millisecond, 5 * time.Minute, spliceChunkMax}, // fast: the largest
		{256 << 10, 100 * time.Second, 5 * time.Minute, 78643},         // 2.6 KB/s: 30 s worth
		{16 << 10, 100 * time.Second, 5 * time.Minute, spliceChunkMin}, // 164 B/s: the smallest
		{1 << 20, 10 * time.Second, 5 * time.Minute, 3 << 20},          // 100 KiB/s, 30 s worth
		{1 << 20, 0, time.Minute, spliceChunkMax},
	} {
		if got := nextChunk(c.moved, c.took, c.idle); got != c.want {
			t.Errorf("nextChunk(%d, %v, %v) = %d, want %d", c.moved, c.took, c.idle, got, c.want)
		}
	}
}
