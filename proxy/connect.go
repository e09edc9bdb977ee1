package proxy

import (
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// tunnel serves CONNECT (https through the forward proxy): the bytes are
// encrypted, so they are tunnelled to the target unchanged, never P2P.
func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request) {
	host := r.URL.Host
	if host == "" {
		host = r.Host
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		http.Error(w, "damselfly proxy: CONNECT needs host:port", http.StatusBadRequest)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "damselfly proxy: CONNECT is not supported on this connection", http.StatusHTTPVersionNotSupported)
		return
	}
	dst, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(r.Context(), "tcp", host)
	if err != nil {
		p.log.WithError(err).WithField("target", host).Warn("proxy: CONNECT dial failed")
		http.Error(w, "damselfly proxy: cannot reach "+host+": "+err.Error(), http.StatusBadGateway)
		return
	}
	src, buf, err := hj.Hijack()
	if err != nil {
		dst.Close()
		return
	}
	p.st.tunnels.Add(1)
	p.log.WithFields(logrus.Fields{"target": host, "client": r.RemoteAddr}).Debug("proxy: CONNECT tunnel")
	io.WriteString(src, "HTTP/1.1 200 Connection established\r\n\r\n")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		// Bytes the client sent after the CONNECT line are in buf.
		io.Copy(dst, buf)
		if c, ok := dst.(*net.TCPConn); ok {
			c.CloseWrite()
		}
	}()
	go func() {
		defer wg.Done()
		io.Copy(src, dst)
		if c, ok := src.(*net.TCPConn); ok {
			c.CloseWrite()
		}
	}()
	wg.Wait()
	src.Close()
	dst.Close()
}
