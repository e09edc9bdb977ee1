package dashboard

// Series is a ring buffer of the last n samples. The zero value holds
// nothing; use NewSeries. Not safe for concurrent use.
type Series struct {
	vals []float64
	next int
	full bool
}

// NewSeries returns a series that keeps the last n (at least 1) samples.
func NewSeries(n int) *Series { return &Series{vals: make([]float64, max(n, 1))} }

// Add appends v, dropping the oldest sample when full.
func (s *Series) Add(v float64) {
	s.vals[s.next] = v
	s.next = (s.next + 1) % len(s.vals)
	if s.next == 0 {
		s.full = true
	}
}

// Values returns the samples, oldest first.
func (s *Series) Values() []float64 {
	if !s.full {
		return append([]float64{}, s.vals[:s.next]...)
	}
	return append(append([]float64{}, s.vals[s.next:]...), s.vals[:s.next]...)
}

// Last returns the newest sample, 0 when empty.
func (s *Series) Last() float64 {
	if !s.full && s.next == 0 {
		return 0
	}
	return s.vals[(s.next+len(s.vals)-1)%len(s.vals)]
}
