//go:build !linux

package relay

import "syscall"

// poller parks idle sessions on Linux only; elsewhere each session keeps
// its reading goroutine.
type poller struct{}

func newPoller() (*poller, error)         { return nil, nil }
func (p *poller) park(*wsConn) bool       { return false }
func (p *poller) forget(*wsConn) bool     { return false }
func (p *poller) rest(*wsConn, bool) bool { return false }
func (p *poller) release(*wsConn)         {}
func (p *poller) stop()                   {}

func socketFD(syscall.RawConn) int32 { return -1 }
