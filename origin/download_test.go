package origin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDownload(t *testing.T) {
	content := randomBytes(300000, 11)
	tests := []struct {
		name       string
		setup      func(o *testOrigin)
		wantLength int64
		wantStatus int
	}{
		{name: "with length", wantLength: 300000},
		{name: "without length", setup: func(o *testOrigin) { o.noRanges, o.chunked = true, true }, wantLength: -1},
		{name: "cut and resumed", setup: func(o *testOrigin) { o.cutOnce = true }, wantLength: 300000},
		{name: "500 twice", setup: func(o *testOrigin) { o.fail500 = 2 }, wantLength: 300000},
		{name: "404", setup: func(o *testOrigin) { o.notFound = true }, wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newOrigin(t, content, tt.setup)
			c := testClient(t, nil)
			var buf bytes.Buffer
			info, n, err := c.Download(context.Background(), o.url(), nil, &buf)
			if tt.wantStatus != 0 {
				var se *StatusError
				if !errors.As(err, &se) || se.Code != tt.wantStatus {
					t.Fatalf("Download error = %v, want StatusError %d", err, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			if n != int64(len(content)) || !bytes.Equal(buf.Bytes(), content) {
				t.Fatalf("Download wrote %d bytes, content equal: %v", n, bytes.Equal(buf.Bytes(), content))
			}
			if info.Length != tt.wantLength || info.ETag != etagOf(content) {
				t.Errorf("info = %+v, want length %d", info, tt.wantLength)
			}
		})
	}
}

func TestDownloadCutWithoutValidator(t *testing.T) {
	content := randomBytes(300000, 12)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(content[:1000])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer srv.Close()
	c := testClient(t, nil)
	_, n, err := c.Download(context.Background(), srv.URL, nil, io.Discard)
	if err == nil || n != 1000 || !strings.Contains(err.Error(), "cannot resume") {
		t.Fatalf("Download = %d, %v; want a failure after 1000 bytes", n, err)
	}
}
