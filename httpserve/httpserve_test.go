package httpserve

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve runs h under l on a loopback listener; t.Cleanup closes it.
func serve(t *testing.T, h http.Handler, l Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Server(h, l)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// short are limits small enough for a unit test.
var short = Limits{ReadHeader: 300 * time.Millisecond, Body: 300 * time.Millisecond,
	WriteStall: 300 * time.Millisecond, Idle: 300 * time.Millisecond, MaxBody: 1 << 10}

// closedWithin reports whether the server closes c (a read returns EOF or
// a reset) before the test's own generous deadline.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	fmt.Fprintf(w, "%d", len(b))
}

func TestStalledClientsAreDropped(t *testing.T) {
	tests := []struct {
		name string
		send string // what the client sends, then it stalls
	}{
		{"slow headers", "POST / HTTP/1.1\r\nHost: x\r\n"},
		{"slow body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"},
		{"idle keep-alive", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"silent", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, http.HandlerFunc(echo), short)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.send)
			if !closedWithin(t, c, 20*time.Second) {
				t.Fatal("the server kept the stalled connection")
			}
			// Meanwhile the server serves others.
			resp, err := http.Post("http://"+addr, "text/plain", strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "5" {
				t.Fatalf("echo answered %q, want 5", b)
			}
		})
	}
}

func TestLongPollOutlivesTheStallBound(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		// Several stall bounds pass before the answer, with the
		// connection's read side idle.
		select {
		case <-time.After(4 * short.WriteStall):
		case <-r.Context().Done():
			return
		}
		w.Write(b)
	}), short)
	resp, err := http.Post("http://"+addr, "text/plain", strings.NewReader("late"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "late" {
		t.Fatalf("long poll: %q, %v", b, err)
	}
}

func TestStreamThatFlowsIsNotCut(t *testing.T) {
	const chunks = 8
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < chunks; i++ {
			fmt.Fprintf(w, "%d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(short.WriteStall / 2)
		}
	}), short)
	resp, err := http.Get("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); n++ {
	}
	if n != chunks {
		t.Fatalf("got %d lines, want %d", n, chunks)
	}
}

func TestReaderThatStopsIsDropped(t *testing.T) {
	done := make(chan error, 1)
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := w.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}), short)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	// Never read.
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("write succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler is still writing to a client that stopped reading")
	}
}

func TestBodyLimits(t *testing.T) {
	addr := serve(t, http.HandlerFunc(echo), short)
	tests := []struct {
		body string
		code int
	}{
		{strings.Repeat("a", 1<<10), http.StatusOK},
		{strings.Repeat("a", 1<<10+1), http.StatusRequestEntityTooLarge},
		{"", http.StatusOK},
	}
	for _, tc := range tests {
		resp, err := http.Post("http://"+addr, "text/plain", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("body of %d bytes: status %d, want %d", len(tc.body), resp.StatusCode, tc.code)
		}
	}
}

func TestServerDefaults(t *testing.T) {
	srv := Server(http.NotFoundHandler(), Limits{})
	if srv.ReadHeaderTimeout != DefaultReadHeader || srv.IdleTimeout != DefaultIdle {
		t.Fatalf("server timeouts %v/%v", srv.ReadHeaderTimeout, srv.IdleTimeout)
	}
	if DefaultReadHeader+DefaultBody >= 60*time.Second || DefaultIdle >= 60*time.Second || DefaultWriteStall >= 60*time.Second {
		t.Fatal("a stalled client could be kept for a minute or more")
	}
}

func TestHijackedConnectionHasNoDeadline(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		rw.Flush()
		time.Sleep(3 * short.WriteStall) // past every bound of the request
		if _, err := io.WriteString(c, "tunnel\n"); err != nil {
			t.Errorf("write to the hijacked connection: %v", err)
		}
	}), short)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "tunnel\n" {
		t.Fatalf("read %q, %v", line, err)
	}
}
