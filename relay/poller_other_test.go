//go:build !linux

package relay

func (p *poller) count() int { return 0 }

func (ps pollers) count() int { return 0 }
