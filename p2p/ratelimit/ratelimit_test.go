package ratelimit

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"", 0, false},
		{"0", 0, false},
		{"unlimited", 0, false},
		{"1000", 1000, false},
		{"20M", 20 << 20, false},
		{"20MB", 20 << 20, false},
		{"20MiB/s", 20 << 20, false},
		{"512k", 512 << 10, false},
		{"1.5G", 3 << 29, false},
		{"fast", 0, true},
		{"-1M", 0, true},
		{"M", 0, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestReaderPassesBytesThrough(t *testing.T) {
	data := bytes.Repeat([]byte("damselfly"), 100000)
	r := &Reader{R: bytes.NewReader(data), Ctx: context.Background(), Limiters: []*Limiter{New(1 << 30), nil}}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
}

func TestNewNilForUnlimited(t *testing.T) {
	if New(0) != nil {
		t.Fatal("New(0) should be nil")
	}
	if l := New(1000); l.Burst() < 32<<10 {
		t.Fatalf("burst %d too small", l.Burst())
	}
}

// zeros is an endless source.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A limiter's long-run rate is its rate, whatever its burst: a reader
// drained for a while moves at most the rate plus one burst, and not much
// less than the rate.
func TestReaderLongRunRate(t *testing.T) {
	tests := []struct {
		name string
		bps  int64
		dur  time.Duration
	}{
		{"512K", 512 << 10, 2 * time.Second},
		{"4M", 4 << 20, 1500 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lim := New(tc.bps)
			// Start with an empty bucket, as a transfer in full swing.
			lim.AllowN(time.Now(), lim.Burst())
			r := &Reader{R: zeros{}, Ctx: context.Background(), Limiters: []*Limiter{lim}}
			buf := make([]byte, 1<<20)
			start := time.Now()
			var n int64
			for time.Since(start) < tc.dur {
				k, err := r.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				n += int64(k)
			}
			got := float64(n) / time.Since(start).Seconds()
			// One read may be charged after the deadline: allow a burst.
			if max := float64(tc.bps) + float64(lim.Burst())/tc.dur.Seconds(); got > max*1.03 {
				t.Errorf("rate %.0f B/s, want at most %.0f (limit %d)", got, max, tc.bps)
			}
			if got < float64(tc.bps)*0.95 {
				t.Errorf("rate %.0f B/s, want about %d", got, tc.bps)
			}
		})
	}
}
