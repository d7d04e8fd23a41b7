package relay

import "time"

// SetTokenTTL shortens the lifetime of the tokens s issues from now on, for
// tests of clients that must renew them (package relay_test). Call it
// before any session authenticates.
func SetTokenTTL(s *Server, d time.Duration) { s.tun.tokenTTL = d }
