package tracer

import (
	"fmt"
	"path"
	"strings"
)

// ParseEvents parses the tracepoint patterns of `record -e`: each argument
// is one or more PROVIDER:EVENT patterns separated by commas, each a
// path.Match pattern over the tracepoint's "provider:event" name, as
// package tracepoint matches them; a pattern without ':' means every event
// of a provider (PROVIDER:*). It returns them in that normalized form, or
// an error naming the first one that cannot select anything: an empty one
// (-e ”, -e ',' or a stray comma), a space or '/' in it (never in a
// tracepoint's name), or a malformed pattern. It returns nil exactly when
// it returns an error, or when args is empty.
func ParseEvents(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		for _, p := range strings.Split(a, ",") {
			p = strings.TrimSpace(p)
			if err := checkEvent(p); err != nil {
				if a != p {
					return nil, fmt.Errorf("-e %q: %w", a, err)
				}
				return nil, fmt.Errorf("-e: %w", err)
			}
			if !strings.Contains(p, ":") {
				p += ":*"
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func checkEvent(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty tracepoint pattern: give PROVIDER:EVENT, such as 'demo:*' (mmiotrace tp list -p PID shows a program's)")
	case strings.ContainsAny(p, " \t\n/"):
		return fmt.Errorf("bad tracepoint pattern %q: no tracepoint name holds a space or '/'", p)
	case strings.Count(p, ":") > 1:
		return fmt.Errorf("bad tracepoint pattern %q: one ':' between PROVIDER and EVENT", p)
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("bad tracepoint pattern %q: %v", p, err)
	}
	return nil
}

// MatchEvent reports whether the tracepoint called name ("provider:event")
// matches pattern, a pattern ParseEvents returned.
func MatchEvent(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}
