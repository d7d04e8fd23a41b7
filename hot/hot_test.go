package hot

import "testing"

func TestLateSubscriberGetsCurrent(t *testing.T) {
	h := New("idle")
	h.Set("calling")
	s := h.Subscribe()
	defer s.Unsubscribe()
	if got := <-s.C(); got != "calling" {
		t.Fatalf("late subscriber got %q, want calling", got)
	}
	h.Set("connected")
	if got := <-s.C(); got != "connected" {
		t.Fatalf("got %q, want connected", got)
	}
}

func TestSlowSubscriberSeesLatestAndNeverBlocks(t *testing.T) {
	h := New(0)
	s := h.Subscribe()
	for i := 1; i <= 1000; i++ {
		h.Set(i) // must not block although nobody reads
	}
	if got := <-s.C(); got != 1000 {
		t.Fatalf("got %d, want the latest 1000", got)
	}
	select {
	case v := <-s.C():
		t.Fatalf("unexpected extra value %d", v)
	default:
	}
}

func TestUnsubscribeAndClose(t *testing.T) {
	h := New(1)
	a, b := h.Subscribe(), h.Subscribe()
	a.Unsubscribe()
	a.Unsubscribe() // idempotent
	<-a.C()         // the initial value stays readable
	if _, ok := <-a.C(); ok {
		t.Fatal("channel open after Unsubscribe")
	}
	h.Set(2)
	h.Close()
	if v := <-b.C(); v != 2 {
		t.Fatalf("got %d, want 2 before close", v)
	}
	if _, ok := <-b.C(); ok {
		t.Fatal("channel open after Close")
	}
	c := h.Subscribe()
	if v, ok := <-c.C(); !ok || v != 2 {
		t.Fatalf("subscribe after close: %d %v, want current value 2", v, ok)
	}
	if _, ok := <-c.C(); ok {
		t.Fatal("subscription after Close stays open")
	}
	c.Unsubscribe()
	h.Set(3) // no panic on send to closed subscriptions
	if h.Get() != 3 {
		t.Fatal("Get after Set")
	}
}
