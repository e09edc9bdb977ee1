// Package meter owns counting bytes as they flow: Reader, ReadCloser and
// Writer wrappers that add every byte they pass to an atomic counter. It
// limits nothing (package p2p/ratelimit does) and stores nothing.
package meter

import (
	"io"
	"sync/atomic"
)

// Reader counts the bytes read through it into N.
type Reader struct {
	R io.Reader
	N *atomic.Int64
}

// NewReader returns r counting into n.
func NewReader(r io.Reader, n *atomic.Int64) *Reader { return &Reader{R: r, N: n} }

func (c *Reader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N.Add(int64(n))
	return n, err
}

// ReadCloser counts the bytes read through it into N and closes the
// underlying body.
type ReadCloser struct {
	io.ReadCloser
	N *atomic.Int64
}

// NewReadCloser returns rc counting into n.
func NewReadCloser(rc io.ReadCloser, n *atomic.Int64) *ReadCloser {
	return &ReadCloser{ReadCloser: rc, N: n}
}

func (c *ReadCloser) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.N.Add(int64(n))
	return n, err
}

// Writer counts the bytes written through it into N.
type Writer struct {
	W io.Writer
	N *atomic.Int64
}

// NewWriter returns w counting into n.
func NewWriter(w io.Writer, n *atomic.Int64) *Writer { return &Writer{W: w, N: n} }

func (c *Writer) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N.Add(int64(n))
	return n, err
}
