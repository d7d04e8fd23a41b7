package relay

import (
	"maps"
	"slices"
	"testing"
	"time"
)

// TestAcker: envelopes answered in any order are settled; the others expire
// once, in order, each with the state it had (ackDropped when a recipient
// node dropped and counted it); those answered "no responders" go to the
// offline check instead, once; the table grows past its first size while
// its entries wrap around; stop waits for the last expiry. run starts once
// every envelope is answered as the test means it to be, so that none
// expires before its answer however slowly the test runs.
func TestAcker(t *testing.T) {
	wait := 50 * time.Millisecond
	got := make(chan []awaited, 100)
	gotChecks := make(chan []offlineCheck, 100)
	a := newAcker(wait, func(es []awaited) { got <- slices.Clone(es) }, func(cs []offlineCheck) { gotChecks <- slices.Clone(cs) })
	track := func() uint64 {
		seq, ok := a.track(7, "u12345678", "x")
		if !ok {
			t.Fatal("the table refused an envelope")
		}
		return seq
	}
	want := map[uint64]ackState{}
	// 200 in a row, most answered, so that the next ones wrap around the
	// first ring of minAwaited entries before it grows.
	for range 200 {
		seq := track()
		if seq%10 == 0 {
			want[seq] = ackPending
			continue
		}
		if _, ok := a.settle(seq, ackSettled); !ok {
			t.Fatalf("settle %d: not awaited", seq)
		}
	}
	for range 3 * minAwaited {
		seq := track()
		switch seq % 3 {
		case 0:
			want[seq] = ackPending
		case 1:
			a.settle(seq, ackDropped)
			a.settle(seq, ackDropped) // a second node dropped it too
			want[seq] = ackDropped
		case 2:
			a.settle(seq, ackDropped)
			a.settle(seq, ackSettled) // another node delivered it
		}
	}
	if _, ok := a.settle(5, ackSettled); ok {
		t.Error("an envelope was settled twice")
	}
	offline := map[uint64]bool{}
	for range 3 {
		seq := track()
		a.offline(seq, 42)
		a.offline(seq, 43) // a second answer
		offline[seq] = true
	}
	go a.run()
	var expired []awaited
	for len(expired) < len(want) {
		expired = append(expired, <-got...)
	}
	var checks []offlineCheck
	for len(checks) < len(offline) {
		checks = append(checks, <-gotChecks...)
	}
	a.stop()
	close(got)
	for es := range got {
		expired = append(expired, es...)
	}
	close(gotChecks)
	for cs := range gotChecks {
		checks = append(checks, cs...)
	}
	if len(checks) != len(offline) {
		t.Errorf("%d offline checks, want %d", len(checks), len(offline))
	}
	for _, c := range checks {
		if !offline[c.e.seq] || c.epoch != 42 || c.e.id != "x" {
			t.Errorf("offline check %+v", c)
		}
	}
	if len(expired) != len(want) {
		t.Fatalf("%d expired, want %d", len(expired), len(want))
	}
	for i, e := range expired {
		if i > 0 && e.seq <= expired[i-1].seq {
			t.Fatalf("expired out of order: %d after %d", e.seq, expired[i-1].seq)
		}
		if st, ok := want[e.seq]; !ok || st != e.state || e.sid != 7 || e.to != "u12345678" || e.id != "x" {
			t.Errorf("expired %+v, want state %v (awaited: %v)", e, st, ok)
		}
		if _, ok := a.settle(e.seq, ackSettled); ok {
			t.Errorf("%d settled after it expired", e.seq)
		}
	}
}

// TestAckBatch: acknowledgements are grouped by the sending node's inbox;
// a reply subject without a seq (a relay before acknowledgements) is not
// batched.
func TestAckBatch(t *testing.T) {
	var b ackBatch
	for _, reply := range []string{
		"duet.n.A.1.u12345678.10.id-1",
		"duet.n.B.2.u12345678.11",
		"duet.n.A.3.u12345678.12",
	} {
		if !b.add(reply) {
			t.Errorf("%s: not batched", reply)
		}
	}
	for _, reply := range []string{"duet.n.A.1.u12345678.id-1", "duet.n.A.1.u12345678", "duet.n.A.1.u12345678."} {
		if b.add(reply) {
			t.Errorf("%s: batched", reply)
		}
	}
	got := map[string]string{}
	for i, inbox := range b.inbox {
		got[inbox] = string(b.seqs[i])
	}
	if want := map[string]string{"duet.n.A": "10 12", "duet.n.B": "11"}; !maps.Equal(got, want) || b.n != 3 {
		t.Errorf("batch %v (n %d), want %v", got, b.n, want)
	}
}
