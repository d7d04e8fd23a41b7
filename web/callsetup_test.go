package web_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	duetcall "github.com/duetcall/duet/call"
)

// The call set-ups the browser call tests share: two browsers, or a
// browser and a Go bot, in a call whose media flows.

// browserCall opens alice's and bob's tabs, runs prepare (when not nil) on
// each, has alice call bob (with video or not) and bob answer, and waits
// until both are connected and receive audio.
func (env *callEnv) browserCall(t *testing.T, video bool, prepare func(*tab)) (alice, bob *tab) {
	t.Helper()
	alice = env.openTab(t, "alice", "")
	alice.setup(false)
	bob = env.openTab(t, "bob", "")
	b := bob.setup(false)
	if prepare != nil {
		prepare(alice)
		prepare(bob)
	}
	if r := drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, %v)", b, video)); !r.OK {
		t.Fatalf("alice's call: %+v", r)
	}
	in := drive[jsIncoming](bob, 15*time.Second, "nextIncoming(10000)")
	if r := drive[jsResult](bob, 20*time.Second, fmt.Sprintf("answer(%q)", in.CallID)); !r.OK {
		t.Fatalf("bob's answer: %+v", r)
	}
	alice.waitState("connected", 15*time.Second)
	bob.waitState("connected", 15*time.Second)
	waitInboundAudio(t, alice)
	waitInboundAudio(t, bob)
	return alice, bob
}

// callBot has tb call the Go bot (with video or not) and the bot answer,
// and waits until both are connected and tb receives audio. It returns
// the bot's status then (its CallID names the bot's recording).
func callBot(ctx context.Context, t *testing.T, tb *tab, bot *goBot, video bool) duetcall.Status {
	t.Helper()
	if r := drive[jsResult](tb, 20*time.Second, fmt.Sprintf("call(%q, %v)", bot.alias, video)); !r.OK {
		t.Fatalf("%s's call: %+v", tb.name, r)
	}
	bot.waitRing(10 * time.Second)
	if err := bot.mod.Answer(ctx); err != nil {
		t.Fatalf("%s: Answer: %v", bot.name, err)
	}
	tb.waitState("connected", 15*time.Second)
	st := bot.waitState(10*time.Second, "connected", func(s duetcall.Status) bool { return s.State == duetcall.StateConnected })
	waitInboundAudio(t, tb)
	return st
}

// waitStats waits until tb's Diag sample satisfies ok (within timeout) and
// returns it; the test fails otherwise.
func waitStats(t *testing.T, tb *tab, what string, timeout time.Duration, ok func(jsDiag) bool) jsDiag {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		d := tb.stats()
		if ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not reached within %v: %s", tb.name, what, timeout, d)
		}
	}
}

// waitStats waits until the bot's call stats satisfy ok (within timeout)
// and returns them; the test fails otherwise.
func (b *goBot) waitStats(what string, timeout time.Duration, ok func(duetcall.Stats) bool) duetcall.Stats {
	b.t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		s := b.mod.Stats()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: %s not reached within %v: %+v", b.name, what, timeout, s)
		}
	}
}
