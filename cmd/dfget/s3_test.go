package main

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCopyVerified(t *testing.T) {
	data := []byte(strings.Repeat("damselfly ", 1000))
	stored := append(append([]byte{}, data...), make([]byte, 100)...) // a data file may be longer
	sha := sha256.Sum256(data)
	sum := md5.Sum(data)
	good, goodMD5 := "sha256:"+hex.EncodeToString(sha[:]), hex.EncodeToString(sum[:])
	tests := []struct {
		name, sha, md5, wantErr string
	}{
		{name: "no digests"},
		{name: "both match", sha: good, md5: goodMD5},
		{name: "md5 in upper case", md5: strings.ToUpper(goodMD5)},
		{name: "sha256 differs", sha: "sha256:" + strings.Repeat("0", 64), wantErr: "sha256 of the object"},
		{name: "md5 differs", md5: strings.Repeat("0", 32), wantErr: "md5 of the object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			from, to := filepath.Join(dir, "data"), filepath.Join(dir, "out")
			if err := os.WriteFile(from, stored, 0o644); err != nil {
				t.Fatal(err)
			}
			err := copyVerified(from, to, int64(len(data)), tt.sha, tt.md5)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				if ents, _ := os.ReadDir(dir); len(ents) != 1 {
					t.Fatalf("left %d files behind, want only the data file", len(ents))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(to)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("output %d bytes (%v), want the %d of the object", len(got), err, len(data))
			}
		})
	}
}
