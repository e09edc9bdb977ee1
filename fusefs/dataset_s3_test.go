package fusefs

import (
	"strings"
	"testing"
	"time"
)

// TestParseDatasetS3 checks entries naming s3 objects: kept as bucket and
// key (literal keys, canonical scheme), never a store; prefixes and bad
// buckets refused; relative entries under an s3:// manifest are keys of its
// bucket, under an http one URLs as before.
func TestParseDatasetS3(t *testing.T) {
	doc := func(url string) string {
		return `{"version":1,"files":[{"path":"f","size":3,"digest":"sha256:00","url":` + strings.ReplaceAll(`"`+url+`"`, `\`, `\\`) + `}]}`
	}
	tests := []struct {
		name, base, url, want, wantErr string
	}{
		{"s3 entry", "http://o/ds/m.json", "s3://bkt/train/a.bin", "s3://bkt/train/a.bin", ""},
		{"upper-case scheme", "http://o/ds/m.json", "S3://bkt/a.bin", "s3://bkt/a.bin", ""},
		{"literal key", "http://o/ds/m.json", "s3://bkt/a?b#c%20d", "s3://bkt/a?b#c%20d", ""},
		{"relative stays http", "http://o/ds/m.json", "s3x.bin", "http://o/ds/s3x.bin", ""},
		{"http under s3", "s3://bkt/ds/m.json", "http://o/x.bin", "http://o/x.bin", ""},
		{"relative under s3", "s3://bkt/ds/m.json", "shards/0.bin", "s3://bkt/ds/shards/0.bin", ""},
		{"dot dot under s3", "s3://bkt/ds/m.json", "../other/0.bin", "s3://bkt/other/0.bin", ""},
		{"climbing out of the bucket", "s3://bkt/ds/m.json", "../../../etc/passwd", "s3://bkt/etc/passwd", ""},
		{"absolute path under s3", "s3://bkt/ds/m.json", "/top.bin", "s3://bkt/top.bin", ""},
		{"s3 in another bucket", "s3://bkt/ds/m.json", "s3://other/x", "s3://other/x", ""},
		{"prefix", "http://o/ds/m.json", "s3://bkt/train/", "", "prefix"},
		{"bucket only", "http://o/ds/m.json", "s3://bkt", "", "prefix"},
		{"bad bucket", "http://o/ds/m.json", "s3://b/x", "", "bucket name"},
		{"a store's host", "http://o/ds/m.json", "s3://evil.example:9000/bkt/x", "", "bucket name"},
		{"user info", "http://o/ds/m.json", "s3://AKID:secret@bkt/x", "", "bucket name"},
		{"relative dir under s3", "s3://bkt/ds/m.json", "shards/", "", "prefix"},
		{"network path under s3", "s3://bkt/ds/m.json", "//evil.example/x", "", "key path only"},
		{"query under s3", "s3://bkt/ds/m.json", "x?versionId=1", "", "key path only"},
		{"ftp under s3", "s3://bkt/ds/m.json", "ftp://h/x", "", "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDataset([]byte(doc(tt.url)), tt.base)
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Files[0].URL != tt.want {
				t.Fatalf("url %q, want %q", d.Files[0].URL, tt.want)
			}
			e := d.Entries(nil, time.Now())[0]
			if e.Source != tt.want && strings.HasPrefix(tt.want, "s3://") {
				t.Errorf("source %q, want %q", e.Source, tt.want)
			}
			if e.Size != 3 || e.Digest != "sha256:00" {
				t.Errorf("entry %+v", e)
			}
		})
	}
}
