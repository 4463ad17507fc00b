package memory

// Len returns the number of entries held, expired or not.
func Len(s *Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.kv) + len(s.seen)
}
