package dashboard

import (
	"time"

	"github.com/damselfly-p2p/damselfly/wire"
)

// API paths the page reads (all GET, all behind the admin token).
const (
	// SummaryPath answers a Cluster.
	SummaryPath = "/api/v1/dashboard"
	// PiecesPathPattern answers the PieceMap of one task.
	PiecesPathPattern = "/api/v1/tasks/{id}/pieces"
)

// Task states as the dashboard shows them.
const (
	StateWaiting     = "waiting"     // the seed has the layout, no peer yet
	StateSeeding     = "seeding"     // the seed still fetches from the origin
	StateDownloading = "downloading" // peers still download
	StateComplete    = "complete"    // the seed and every peer hold everything
	StateFailed      = "failed"      // the seed gave up on the origin
)

// Cluster is the dashboard's document: every supernode it covers (this
// one first, then the other cluster members) and their sums.
type Cluster struct {
	GeneratedAt time.Time `json:"generatedAt"`
	// Interval is the sampling period of every History, in milliseconds.
	Interval int64  `json:"intervalMs"`
	Totals   Totals `json:"totals"`
	Nodes    []Node `json:"nodes"`
	// History is the cluster's aggregate throughput, oldest first.
	History []float64 `json:"history"`
}

// Node is one supernode's view.
type Node struct {
	Supernode string `json:"supernode"`
	// Down is set, with Error, for a cluster member that did not answer.
	Down     bool                 `json:"down,omitempty"`
	Error    string               `json:"error,omitempty"`
	Uptime   string               `json:"uptime"`
	Totals   Totals               `json:"totals"`
	Tasks    []Task               `json:"tasks"`
	Peers    []Peer               `json:"peers"`
	Preheats []wire.PreheatStatus `json:"preheats"`
	// History is this node's aggregate throughput, oldest first.
	History []float64 `json:"history"`
}

// Totals sums a node or a cluster.
type Totals struct {
	Tasks         int `json:"tasks"`
	ActiveTasks   int `json:"activeTasks"`
	Peers         int `json:"peers"`
	IsolatedPeers int `json:"isolatedPeers"`
	// Bytes delivered to peers by other peers and by the seed, and bytes
	// the seed fetched from origins.
	BytesFromPeers  int64 `json:"bytesFromPeers"`
	BytesFromSeed   int64 `json:"bytesFromSeed"`
	BytesFromOrigin int64 `json:"bytesFromOrigin"`
	// OriginSaved is OriginSavedPercent of the three, nil before any byte
	// was delivered.
	OriginSaved *float64 `json:"originSaved"`
	// Throughput is bytes per second delivered to peers over the last
	// sample.
	Throughput float64 `json:"throughput"`
}

// Add adds o's counts to t (OriginSaved is recomputed).
func (t *Totals) Add(o Totals) {
	t.Tasks += o.Tasks
	t.ActiveTasks += o.ActiveTasks
	t.Peers += o.Peers
	t.IsolatedPeers += o.IsolatedPeers
	t.BytesFromPeers += o.BytesFromPeers
	t.BytesFromSeed += o.BytesFromSeed
	t.BytesFromOrigin += o.BytesFromOrigin
	t.Throughput += o.Throughput
	t.OriginSaved = OriginSavedPercent(t.BytesFromPeers, t.BytesFromSeed, t.BytesFromOrigin)
}

// OriginSavedPercent is the share of the bytes delivered to peers (from
// peers and from the seed) that did not have to come from the origin:
// 100 × (1 − origin ÷ delivered), clamped to [0, 100]; nil when nothing
// was delivered.
func OriginSavedPercent(fromPeers, fromSeed, fromOrigin int64) *float64 {
	delivered := fromPeers + fromSeed
	if delivered <= 0 {
		return nil
	}
	v := 100 * (1 - float64(fromOrigin)/float64(delivered))
	v = min(max(v, 0), 100)
	return &v
}

// Task is one task: its status (as GET /api/v1/tasks/{id} answers it) and
// what the dashboard derives from the swarm.
type Task struct {
	wire.TaskStatus
	// Name is a short label: "repo@sha256:abcdef123456" for an OCI blob,
	// else the redacted URL's host and last path element.
	Name string `json:"name"`
	// Status is one of the State constants.
	Status string `json:"status"`
	// SeedProgress and SwarmProgress are fractions in [0, 1]: pieces the
	// seed holds, and the mean of the peers' pieces held.
	SeedProgress  float64 `json:"seedProgress"`
	SwarmProgress float64 `json:"swarmProgress"`
	// Spread counts peers by progress: [0,25%), [25,50%), [50,75%),
	// [75,100%), complete.
	Spread [5]int `json:"spread"`
	// BytesFromPeers and BytesFromSeed are delivered to peers, counting
	// peers that already left the swarm.
	BytesFromPeers int64 `json:"bytesFromPeers"`
	BytesFromSeed  int64 `json:"bytesFromSeed"`
	// OriginSaved is OriginSavedPercent for this task.
	OriginSaved *float64 `json:"originSaved"`
	// Throughput is bytes per second delivered to the task's peers over
	// the last sample; History the recent samples, oldest first.
	Throughput float64   `json:"throughput"`
	History    []float64 `json:"history"`
}

// Peer is one peer's status plus its rates.
type Peer struct {
	wire.PeerStatus
	// DownloadRate is bytes per second the peer reported receiving over
	// the last sample.
	DownloadRate float64 `json:"downloadRate"`
	// UploadRate is bytes per second the peer served; nil while peers do
	// not report what they upload.
	UploadRate *float64 `json:"uploadRate"`
	// BytesDownloaded sums the peer's counters over its current tasks.
	BytesDownloaded int64 `json:"bytesDownloaded"`
}

// PieceMap is which pieces of a task the seed holds and how many peers
// hold each one.
type PieceMap struct {
	TaskID    string `json:"taskID"`
	NumPieces int    `json:"numPieces"`
	PieceSize int64  `json:"pieceSize"`
	// Seed has one character per piece: '1' held by the seed, '0' not.
	Seed string `json:"seed"`
	// Holders[i] is how many of the task's Peers hold piece i.
	Holders []int `json:"holders"`
	Peers   int   `json:"peers"`
}
