//go:build !linux

package relay

func (p *poller) count() int { return 0 }
