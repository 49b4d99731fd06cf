package report

import "github.com/mmiotrace/mmiotrace/trace"

// Processes and system calls: the PROC and SYS records (docs/REPORT.md).
//
// A record names its thread, not its process. The process of a thread is,
// in this order: the process whose pid the thread id is (a process's first
// thread, and the only one of a fork child or a program just executed);
// the process the thread was found in before; the process of the map it
// accesses, whose MAP line came right after the process's PROC line or
// from one of its threads. Each thread keeps the first process found.

// procLine takes a PROC record: a process appears, or executes a program.
func (c *Collector) procLine(r *trace.Record) {
	c.procCtx = r.PID
	p := c.procs[r.PID]
	if p == nil {
		if len(c.procs) >= c.lim.Processes {
			if len(c.otherPIDs) < maxOtherPIDs {
				c.otherPIDs[r.PID] = true
			}
			if c.othP == nil {
				c.othP = &ProcStats{Other: true, First: r.Time, tids: map[int32]bool{}}
				c.s.Procs = append(c.s.Procs, c.othP)
				c.s.OtherProcs = true
			}
			p = c.othP
		} else {
			p = &ProcStats{PID: r.PID, PPID: r.Parent, First: r.Time, tids: map[int32]bool{}}
			c.procs[r.PID] = p
			c.s.Procs = append(c.s.Procs, p)
		}
	}
	p.NumPrograms++
	if !p.Other && len(p.Programs) < maxPrograms {
		p.Programs = append(p.Programs, r.Text)
	}
	p.Last = r.Time
}

// maxOtherPIDs bounds the pids remembered of processes past
// Limits.Processes, so that their first threads' accesses go to the others
// rather than to the process of the map they access (a vfork child's, its
// parent's).
const maxOtherPIDs = 1 << 16

// pidOf returns the process a thread is known to be in, or 0.
func (c *Collector) pidOf(tid int32) int32 {
	if c.procs[tid] != nil || c.otherPIDs[tid] {
		return tid
	}
	if th := c.tids[tid]; th != nil {
		return th.PID
	}
	return 0
}

// process returns the statistics of process pid: its own, or past
// Limits.Processes those of the others.
func (c *Collector) process(pid int32) *ProcStats {
	if p := c.procs[pid]; p != nil {
		return p
	}
	return c.othP
}

// mapLine settles the process of a MAP record's map.
func (c *Collector) mapLine(r *trace.Record) {
	if len(c.procs) == 0 && c.othP == nil {
		return
	}
	pid := c.pidOf(r.TID)
	if pid == 0 {
		pid = c.procCtx
	}
	p := c.process(pid)
	if pid == 0 || p == nil {
		return
	}
	c.live.get(r.MapID).pid = pid
	p.Maps++
	p.Last = r.Time
}

// procOf returns the process of a thread's access to a map (or of its
// system call on it), or nil when the log has no PROC line or does not
// tell; it counts the thread in the process.
func (c *Collector) procOf(th *ThreadStats, r *trace.Record) *ProcStats {
	if len(c.procs) == 0 && c.othP == nil {
		return nil
	}
	pid := c.pidOf(r.TID)
	if pid == 0 {
		pid = c.live.get(r.MapID).pid
	}
	p := c.process(pid)
	if pid == 0 || p == nil {
		return nil
	}
	if !th.Other && th.PID == 0 {
		th.PID = pid
	}
	p.Last = r.Time
	if !p.tids[r.TID] {
		if len(p.tids) < maxSets {
			p.tids[r.TID] = true
		} else {
			p.manyTIDs = true
		}
	}
	return p
}

// syscall takes a SYS record: counted on the log, its map (by call and
// direction, and where its range lies, for the heat map), its thread and
// its process.
func (c *Collector) syscall(r *trace.Record) {
	c.s.Sys++
	c.s.SysBytes += r.Len
	m := c.mapOf(r.MapID)
	m.Sys++
	m.SysBytes += r.Len
	k := callKey{r.Text, r.Dir}
	call := m.calls[k]
	if call == nil {
		if len(m.calls) >= c.lim.Syscalls {
			k = callKey{name: "other"} // direction 0: no SYS record has it
		}
		if call = m.calls[k]; call == nil {
			call = &SyscallStats{Name: k.name, Dir: k.dir, Other: k.dir == 0}
			m.calls[k] = call
		}
	}
	call.Count++
	call.Bytes += r.Len
	if off, outside := offsetIn(m, r.Phys); !outside && r.Len > 0 {
		if _, ok := m.sysOffs[off]; !ok && len(m.sysOffs) < maxSets {
			name := ""
			if !m.Other {
				name = c.regName(r.MapID, r.Phys)
			}
			m.sysOffs[off] = name
		}
		end := max(off+r.Len, off) // an end past 2^64 (a malformed log) ends there
		if m.sysHi == 0 || off < m.sysLo {
			m.sysLo = off
		}
		m.sysHi = max(m.sysHi, end)
	}
	th := c.thread(r.TID, r.Time)
	th.Sys++
	c.touch(th, m, r.TID)
	if p := c.procOf(th, r); p != nil {
		p.Sys++
	}
}
