package tracer

import "github.com/mmiotrace/mmiotrace/internal/procmaps"

// Mapping is one line of /proc/PID/maps.
type Mapping = procmaps.Mapping

// ReadMaps reads the mappings of process pid.
func ReadMaps(pid int) ([]Mapping, error) { return procmaps.Read(pid) }

const (
	protRead  = procmaps.ProtRead
	protWrite = procmaps.ProtWrite
)
