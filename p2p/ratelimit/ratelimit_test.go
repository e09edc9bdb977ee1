package ratelimit

import (
	"bytes"
	"context"
	"io"
	"testing"
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
