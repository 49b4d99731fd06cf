package tracepoint

import "time"

// SetServerLimits sets the control server's limits for a test and returns
// a function that restores them. Connections already served keep the
// limits they started with only for the wait in progress.
func SetServerLimits(conns, sessions int, idle, frame time.Duration) (restore func()) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	c, s, i, f := maxConns, maxSessions, idleTimeout, frameTimeout
	maxConns, maxSessions, idleTimeout, frameTimeout = conns, sessions, idle, frame
	return func() {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		maxConns, maxSessions, idleTimeout, frameTimeout = c, s, i, f
	}
}
