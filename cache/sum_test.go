package cache

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseSum(t *testing.T) {
	valid := SumOf([]byte("hello"))
	tests := []struct {
		name    string
		in      string
		want    Sum
		wantErr bool
	}{
		{"valid", valid.String(), valid, false},
		{"upper hex", "sha256:" + strings.ToUpper(valid.String()[7:]), valid, false},
		{"zero", "sha256:" + strings.Repeat("0", 64), Sum{}, false},
		{"no prefix", valid.String()[7:], Sum{}, true},
		{"other algorithm", "sha512:" + valid.String()[7:], Sum{}, true},
		{"short", valid.String()[:70], Sum{}, true},
		{"long", valid.String() + "00", Sum{}, true},
		{"bad hex", "sha256:" + strings.Repeat("zz", 32), Sum{}, true},
		{"empty", "", Sum{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSum(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseSum(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("ParseSum(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSum(t *testing.T) {
	data := []byte("piece data")
	s := SumOf(data)
	if s != Sum(sha256.Sum256(data)) {
		t.Fatal("SumOf is not sha256")
	}
	if !strings.HasPrefix(s.String(), "sha256:") || len(s.String()) != 7+64 {
		t.Fatalf("String = %q", s.String())
	}
	if s.IsZero() || !(Sum{}).IsZero() {
		t.Fatal("IsZero wrong")
	}
	b, err := json.Marshal(map[string]Sum{"d": s})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"d":"` + s.String() + `"}`; string(b) != want {
		t.Fatalf("JSON = %s, want %s", b, want)
	}
	var back map[string]Sum
	if err := json.Unmarshal(b, &back); err != nil || back["d"] != s {
		t.Fatalf("JSON round trip: %v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"d":"md5:00"}`), &back); err == nil {
		t.Fatal("bad JSON digest accepted")
	}
}
