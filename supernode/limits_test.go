package supernode

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestClientLimits(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newClientLimits(2, 3) // 2/s, bursts of 3
	for i := 0; i < 3; i++ {
		if ok, _ := c.allow("ip:a", now); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := c.allow("ip:a", now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("past the burst: ok=%v wait=%v, want a refusal with a wait of at most 1s", ok, wait)
	}
	if ok, _ := c.allow("ip:b", now); !ok {
		t.Fatal("another client was refused")
	}
	if ok, _ := c.allow("ip:a", now.Add(wait)); !ok {
		t.Fatal("refused after the announced wait")
	}
	if ok, _ := newClientLimits(-1, 0).allow("ip:a", now); !ok {
		t.Fatal("a negative rate must mean no limit")
	}
}

func TestClientLimitsTableIsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newClientLimits(1000, 1)
	for i := 0; i < maxClients+10; i++ {
		c.allow(string(rune(i)), now.Add(time.Duration(i)*time.Second))
	}
	if n := len(c.m); n > maxClients {
		t.Fatalf("%d buckets, want at most %d", n, maxClients)
	}
}

func TestParsePage(t *testing.T) {
	tests := []struct {
		query   string
		want    page
		wantErr bool
	}{
		{"", page{0, DefaultStatusLimit}, false},
		{"?limit=10&offset=20", page{20, 10}, false},
		{"?limit=0", page{0, 0}, false},
		{"?limit=-1", page{}, true},
		{"?offset=x", page{}, true},
		{"?limit=5001", page{}, true},
	}
	for _, tc := range tests {
		got, err := parsePage(httptest.NewRequest("GET", "/api/v1/status"+tc.query, nil), 0, 0)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v (error %v)", tc.query, got, err, tc.want, tc.wantErr)
		}
	}
	items := []int{0, 1, 2, 3, 4}
	for _, tc := range []struct {
		pg   page
		want int
	}{{page{0, 2}, 2}, {page{4, 2}, 1}, {page{5, 2}, 0}, {page{9, 2}, 0}, {page{0, 0}, 0}} {
		if got := pageOf(items, tc.pg); len(got) != tc.want {
			t.Errorf("pageOf(%+v) has %d items, want %d", tc.pg, len(got), tc.want)
		}
	}
}
