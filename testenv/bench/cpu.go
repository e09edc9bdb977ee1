package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUTimes is the machine's aggregate CPU time counters from /proc/stat,
// in clock ticks.
type CPUTimes struct {
	Busy, Total uint64
}

// ReadCPUTimes reads the aggregate "cpu" line of /proc/stat; ok is false
// where there is none (not Linux).
func ReadCPUTimes() (CPUTimes, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, false
	}
	return parseProcStat(string(b))
}

func parseProcStat(s string) (CPUTimes, bool) {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "cpu" {
			continue
		}
		var c CPUTimes
		for i, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return CPUTimes{}, false
			}
			// user nice system idle iowait irq softirq steal guest guest_nice;
			// guest time is already counted in user.
			if i >= 8 {
				break
			}
			c.Total += n
			if i != 3 && i != 4 {
				c.Busy += n
			}
		}
		return c, true
	}
	return CPUTimes{}, false
}

// BusySeconds returns the CPU time (all cores) that was busy between a and
// b, in seconds.
func BusySeconds(a, b CPUTimes) float64 {
	if b.Busy < a.Busy {
		return 0
	}
	return float64(b.Busy-a.Busy) / clockTicks
}

// Utilization returns the fraction of CPU time (all cores) that was busy
// between a and b, or -1 when it cannot tell.
func Utilization(a, b CPUTimes) float64 {
	if b.Total <= a.Total || b.Busy < a.Busy {
		return -1
	}
	return float64(b.Busy-a.Busy) / float64(b.Total-a.Total)
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

// ProcCPUSeconds returns the user+system CPU time a live process has used,
// from /proc/PID/stat; ok is false when it cannot be read (process gone,
// not Linux).
func ProcCPUSeconds(pid int) (float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	return parsePidStat(string(b))
}

func parsePidStat(s string) (float64, bool) {
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return float64(u+st) / clockTicks, true
}

// SelfCPUSeconds returns the user+system CPU time this process has used.
func SelfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
