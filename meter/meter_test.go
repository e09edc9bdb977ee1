package meter

import (
	"bytes"
	"io"
	"strings"
	"sync/atomic"
	"testing"
)

func TestCounts(t *testing.T) {
	tests := []struct {
		name string
		run  func(n *atomic.Int64) error
		want int64
	}{
		{"reader", func(n *atomic.Int64) error {
			_, err := io.Copy(io.Discard, NewReader(strings.NewReader("hello"), n))
			return err
		}, 5},
		{"readcloser", func(n *atomic.Int64) error {
			_, err := io.Copy(io.Discard, NewReadCloser(io.NopCloser(strings.NewReader("hello world")), n))
			return err
		}, 11},
		{"writer", func(n *atomic.Int64) error {
			_, err := io.Copy(NewWriter(&bytes.Buffer{}, n), strings.NewReader("abc"))
			return err
		}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			n.Store(10)
			if err := tc.run(&n); err != nil {
				t.Fatal(err)
			}
			if got := n.Load(); got != 10+tc.want {
				t.Fatalf("counted %d, want %d", got, 10+tc.want)
			}
		})
	}
}
