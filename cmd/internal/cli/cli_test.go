package cli

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"30", 30 * time.Second, false},
		{"1.5", 1500 * time.Millisecond, false},
		{"2m", 2 * time.Minute, false},
		{"soon", 0, true},
	}
	for _, tt := range tests {
		var d Duration
		err := d.Set(tt.in)
		if (err != nil) != tt.err || (!tt.err && time.Duration(d) != tt.want) {
			t.Errorf("Set(%q) = %v, %v", tt.in, time.Duration(d), err)
		}
	}
}

func TestSplitList(t *testing.T) {
	got := SplitList([]string{"a,b", " c ", "", "d&e"}, ",&")
	want := []string{"a", "b", "c", "d", "e"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
}

func TestSizeRoundTrip(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"0", "0"}, {"20M", "20M"}, {"1.5G", "1536M"}, {"100G", "100G"}, {"1000", "1000"}, {"2T", "2T"}, {"1536K", "1536K"},
	}
	for _, tt := range tests {
		var s Size
		var r Rate
		if err := s.Set(tt.in); err != nil {
			t.Fatal(err)
		}
		if err := r.Set(tt.in); err != nil {
			t.Fatal(err)
		}
		if s.String() != tt.want || r.String() != tt.want {
			t.Errorf("%q: Size %q, Rate %q, want %q", tt.in, s.String(), r.String(), tt.want)
		}
		var back Size
		if err := back.Set(s.String()); err != nil || back != s {
			t.Errorf("%q does not read back: %v, %v", s.String(), back, err)
		}
	}
}

func TestSetupLogging(t *testing.T) {
	tests := []struct {
		format string
		want   string
		err    bool
	}{
		{"text", "*logrus.TextFormatter", false},
		{"json", "*logrus.JSONFormatter", false},
		{"xml", "", true},
	}
	for _, tt := range tests {
		l, err := SetupLogging("info", tt.format)
		if (err != nil) != tt.err {
			t.Fatalf("%s: err %v", tt.format, err)
		}
		if err == nil {
			if got := fmt.Sprintf("%T", l.Formatter); got != tt.want {
				t.Errorf("%s: formatter %s, want %s", tt.format, got, tt.want)
			}
		}
	}
	SetupLog("info")
}
