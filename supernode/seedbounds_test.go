package supernode_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/wire"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(ents)
}

// TestSeedOpenTaskCap registers many distinct URLs one after another
// against a supernode that keeps at most a few seed tasks open: the open
// tasks and file descriptors stay bounded, and a task closed on the way is
// reopened from the store by its next registration and served whole.
func TestSeedOpenTaskCap(t *testing.T) {
	tests := []struct {
		name    string
		maxOpen int
		files   int
	}{
		{"cap 4", 4, 30},
		{"cap 8", 8, 40},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			origin := testenv.NewOrigin(t)
			n := startNode(t, supernode.Config{MaxOpenTasks: tc.maxOpen, RegisterRate: -1})
			base := openFDs(t)
			var first *wire.RegisterResponse
			var firstSum string
			for i := 0; i < tc.files; i++ {
				name := fmt.Sprintf("f%d", i)
				sum := origin.AddRandom(name, 100_000+int64(i), int64(i))
				reg := n.register(t, wire.RegisterRequest{PeerID: "p1", URL: origin.URL(name)})
				n.waitDone(t, reg.TaskID)
				if i == 0 {
					first, firstSum = reg, sum
				}
			}
			st, _ := n.status(t)
			if st.TotalTasks > tc.maxOpen {
				t.Errorf("%d seed tasks open after %d registrations, want at most %d", st.TotalTasks, tc.files, tc.maxOpen)
			}
			// Each open task holds 3 descriptors; allow some for connections.
			if got, bound := openFDs(t)-base, 3*tc.maxOpen+16; got > bound {
				t.Errorf("%d more open files after %d registrations, want at most %d", got, tc.files, bound)
			}
			// The first task was closed; registering it again reopens it.
			if a := n.get(t, "/api/v1/tasks/"+first.TaskID); a.status != 404 {
				t.Fatalf("first task still open (status %d); the cap did not close it", a.status)
			}
			again := n.register(t, wire.RegisterRequest{PeerID: "p2", URL: origin.URL("f0")})
			if again.TaskID != first.TaskID {
				t.Fatalf("task ID changed: %s, want %s", again.TaskID, first.TaskID)
			}
			n.waitDone(t, again.TaskID)
			if got, want := n.seedContent(t, again), firstSum; got != want {
				t.Errorf("reopened task serves sha256 %s, want %s", got, want)
			}
		})
	}
}
