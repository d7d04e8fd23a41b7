// Command fwdfloor measures the floor under the relay's forwarding figure
// (README, "Performance"): what a forwarder that does nothing but move
// fixed-size frames between TCP connections spends in CPU per frame on
// this machine, under the load of `make fwdbench` (sessions, envelopes
// per second, open loop, on loopback).
//
// It starts the forwarder as a child process (one of its own, or an
// external program given a port), opens the sessions to it, sends frames
// between random pairs at their due times and prints the frames
// delivered, their latency from the due time, and the forwarder's CPU
// time (user + system, from /proc) per frame delivered. A frame is
// -size bytes: the destination session's index (4 bytes, little-endian;
// sessions are numbered in the order the forwarder accepted them), its
// due time and its sequence number; the rest is padding.
//
// Forwarders of its own (-forwarder):
//
//	poller      the relay's design: one epoll instance waiting in the Go
//	            runtime's poller, sockets read and written with raw
//	            system calls from the goroutine that serves the wake-up
//	goroutines  a goroutine per connection on net.Conn
//
// Any other value is a program run as `PROGRAM PORT SIZE` that listens on
// 127.0.0.1:PORT (scripts/fwdfloor.c is the same forwarder in C).
//
// With -generator-cpu the generator spins while it waits for the next
// frame's due time until it has spent that much CPU per frame, so that the
// forwarder shares the cores with a load generator as busy as duet
// loadtest (make fwdbench passes the figure of its round's loadtest).
//
// Linux only (epoll, /proc).
package main
