package cli

import (
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
