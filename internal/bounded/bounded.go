// Package bounded keeps maps keyed by outside input (an address, a log key)
// from growing without end: when one is full, the entries that hold nothing
// worth keeping make room for a new one.
package bounded

// MakeRoom deletes the entries of m that stale reports, but only when m holds
// limit entries or more, and reports whether m now has room for one more.
// The sweep costs one pass over a full map, so it runs only on the rare
// insert into a full one.
func MakeRoom[K comparable, V any](m map[K]V, limit int, stale func(V) bool) bool {
	if len(m) < limit {
		return true
	}
	for k, v := range m {
		if stale(v) {
			delete(m, k)
		}
	}
	return len(m) < limit
}
