package wire

import (
	"fmt"
	"slices"
	"testing"
)

func taskKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%064x", i*7919+13)
	}
	return keys
}

func TestHRWStable(t *testing.T) {
	nodes := []string{"10.0.0.1:8002", "10.0.0.2:8002", "10.0.0.3:8002"}
	tests := []struct {
		name  string
		other []string
	}{
		{"same order", []string{"10.0.0.1:8002", "10.0.0.2:8002", "10.0.0.3:8002"}},
		{"reversed", []string{"10.0.0.3:8002", "10.0.0.2:8002", "10.0.0.1:8002"}},
		{"rotated", []string{"10.0.0.2:8002", "10.0.0.3:8002", "10.0.0.1:8002"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range taskKeys(500) {
				a, b := HRWOrder(k, nodes), HRWOrder(k, tc.other)
				if !slices.Equal(a, b) {
					t.Fatalf("key %s: order %v from %v, %v from %v", k, a, nodes, b, tc.other)
				}
				if HRWOwner(k, tc.other) != a[0] {
					t.Fatalf("key %s: owner %s, order starts with %s", k, HRWOwner(k, tc.other), a[0])
				}
			}
		})
	}
	if HRWOwner("x", nil) != "" {
		t.Fatal("owner among no nodes is not empty")
	}
}

func TestHRWBalance(t *testing.T) {
	tests := []struct {
		nodes []string
		keys  int
	}{
		{[]string{"127.0.0.1:8002", "127.0.0.1:8003", "127.0.0.1:8004"}, 30000},
		{[]string{"sn-0.sn:8002", "sn-1.sn:8002", "sn-2.sn:8002"}, 30000},
		{[]string{"a:1", "b:1", "c:1", "d:1", "e:1"}, 50000},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.nodes), func(t *testing.T) {
			count := map[string]int{}
			for _, k := range taskKeys(tc.keys) {
				count[HRWOwner(k, tc.nodes)]++
			}
			mean := float64(tc.keys) / float64(len(tc.nodes))
			for _, n := range tc.nodes {
				if share := float64(count[n]) / mean; share > 1.2 || share < 0.8 {
					t.Errorf("%s owns %d keys, %.2fx the mean %.0f", n, count[n], share, mean)
				}
			}
		})
	}
}

func TestHRWMinimalMovement(t *testing.T) {
	base := []string{"127.0.0.1:8002", "127.0.0.1:8003", "127.0.0.1:8004"}
	tests := []struct {
		name    string
		after   []string
		changed string // the node removed or added
	}{
		{"remove one", []string{"127.0.0.1:8002", "127.0.0.1:8004"}, "127.0.0.1:8003"},
		{"add one", append(slices.Clone(base), "127.0.0.1:8005"), "127.0.0.1:8005"},
	}
	keys := taskKeys(20000)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			moved := 0
			for _, k := range keys {
				before, after := HRWOwner(k, base), HRWOwner(k, tc.after)
				if before == after {
					continue
				}
				moved++
				// Only keys of (or to) the changed node may move.
				if before != tc.changed && after != tc.changed {
					t.Fatalf("key %s moved from %s to %s, neither is %s", k, before, after, tc.changed)
				}
			}
			// The changed node's share: about 1/3 (removal) or 1/4 (addition).
			n := max(len(base), len(tc.after))
			want := float64(len(keys)) / float64(n)
			if f := float64(moved) / want; f < 0.8 || f > 1.2 {
				t.Errorf("%d keys moved, want about %.0f", moved, want)
			}
		})
	}
}
