package supernode

// Seed bounds: the seed keeps at most MaxOpenTasks tasks open (each holds
// seedTaskFDs file descriptors: the task directory's lock, the data file
// and the piece records), closes tasks nobody used for SeedIdle, and
// forgets failed tasks after failedKeep. A closed task stays in the store
// (whose quota and TTL bound the disk); the next registration of it
// reopens it from there (revalidating it with the origin, as after a
// restart).
//
// "Used" is a registration, a sync, a piece served or fetched, or a
// preheat. A task is closed only while nothing uses it: no fill, no
// on-demand fetch, no revalidation, no piece upload in progress; so the
// open count may exceed the cap by the tasks busy at once.

import (
	"sort"
	"time"
)

// Defaults of the seed bounds.
const (
	DefaultMaxOpenTasks = 1024
	DefaultSeedIdle     = 5 * time.Minute
	// seedTaskFDs is how many file descriptors an open seed task holds.
	seedTaskFDs = 3
	// failedKeep is how long a failed seed task is kept (its error is
	// answered to registrations meanwhile) before it is forgotten.
	failedKeep = time.Minute
)

// FDBound is the documented bound on the supernode's open file
// descriptors for maxOpenTasks open seed tasks and conns concurrent
// connections (clients and origins): seedTaskFDs per task, one per
// connection, and a constant for the store, listeners, logs and runtime.
func FDBound(maxOpenTasks, conns int) int {
	if maxOpenTasks <= 0 {
		maxOpenTasks = DefaultMaxOpenTasks
	}
	return seedTaskFDs*maxOpenTasks + conns + 64
}

// touch records a use of st now.
func (st *seedTask) touch() { st.lastUsed.Store(time.Now().UnixNano()) }

// acquire marks st in use (a piece upload or fetch) unless it was closed;
// release undoes it.
func (st *seedTask) acquire() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	st.uses++
	st.touch()
	return true
}

func (st *seedTask) release() {
	st.mu.Lock()
	st.uses--
	st.mu.Unlock()
	st.touch()
}

// closableLocked says whether st may be closed now. Caller holds st.mu.
func (st *seedTask) closableLocked() bool {
	if st.closed || st.uses > 0 {
		return false
	}
	if st.state == stateFailed {
		return true // a fill or fetch still running fails on the closed task
	}
	if st.filling || len(st.claimed) > 0 || len(st.urgent) > 0 || st.validating != nil {
		return false
	}
	switch st.state {
	case stateDone, stateOnDemand, stateFailed:
		return true
	}
	return false
}

// markClosedLocked marks st closed if it may be; the caller then closes its
// cache task. Caller holds st.mu.
func (st *seedTask) markClosedLocked() bool {
	if !st.closableLocked() {
		return false
	}
	st.closed = true
	return true
}

// evictLocked closes the least recently used closable tasks until at
// most keep remain. Caller holds s.mu; the returned tasks' cache tasks
// are to be closed once it is released.
func (s *seeder) evictLocked(keep int) []*seedTask {
	if len(s.tasks) <= keep {
		return nil
	}
	type cand struct {
		st   *seedTask
		used int64
	}
	cands := make([]cand, 0, len(s.tasks))
	for _, st := range s.tasks {
		cands = append(cands, cand{st, st.lastUsed.Load()})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].used < cands[j].used })
	var out []*seedTask
	for _, c := range cands {
		if len(s.tasks) <= keep {
			break
		}
		c.st.mu.Lock()
		ok := c.st.markClosedLocked()
		c.st.mu.Unlock()
		if ok {
			delete(s.tasks, c.st.id)
			out = append(out, c.st)
		}
	}
	s.closing += len(out)
	return out
}

// closeAll closes the cache tasks of seed tasks taken out of the map
// (and counted in s.closing until closed: closing flushes the files,
// which takes a while, and their descriptors count against the cap
// meanwhile).
func (s *seeder) closeAll(victims []*seedTask, why string) {
	for _, st := range victims {
		st.mu.Lock()
		t := st.task
		st.mu.Unlock()
		if t != nil {
			if err := t.Close(); err != nil {
				s.logFor(st).WithError(err).Warn("seed: close task")
			}
		}
		s.mu.Lock()
		s.closing--
		s.mu.Unlock()
	}
	if len(victims) > 0 {
		s.log.WithField("tasks", len(victims)).WithField("why", why).Debug("seed: closed tasks")
	}
}

// enforceCap closes least recently used tasks when more than maxOpen are
// open, down to seven eighths of it (so that eviction runs once per many
// registrations).
func (s *seeder) enforceCap() {
	if s.maxOpen <= 0 {
		return
	}
	s.mu.Lock()
	if len(s.tasks) <= s.maxOpen {
		s.mu.Unlock()
		return
	}
	victims := s.evictLocked(s.maxOpen - s.maxOpen/8)
	s.mu.Unlock()
	s.closeAll(victims, "over --max-open-tasks")
}

// prune closes tasks idle for longer than the idle period and forgets
// failed tasks older than failedKeep.
func (s *seeder) prune(now time.Time) {
	s.mu.Lock()
	var victims []*seedTask
	for id, st := range s.tasks {
		idle := now.Sub(time.Unix(0, st.lastUsed.Load()))
		st.mu.Lock()
		failed := st.state == stateFailed
		ok := (s.idle > 0 && idle > s.idle || failed && idle > failedKeep) && st.markClosedLocked()
		st.mu.Unlock()
		if ok {
			delete(s.tasks, id)
			victims = append(victims, st)
		}
	}
	s.closing += len(victims)
	s.mu.Unlock()
	s.closeAll(victims, "idle")
	s.enforceCap()
}
