package call

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestCallNetUpdateWhileGathering: an ICE restart re-reads the interfaces
// (updateInterfaces) while the previous generation's gathering may still
// read them (there, its host candidates'; in a call, a relay candidate's
// whose TURN server has not answered yet). With
// stdnet.Net's own UpdateInterfaces that is a data race (-race reports
// it); callNet swaps the list under a lock.
func TestCallNetUpdateWhileGathering(t *testing.T) {
	checkLeaks(t)
	n, err := newCallNet()
	if err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetNet(dialTimeoutNet{n})
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Close() }()
	if _, err := pc.CreateDataChannel("d", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil { // gathering starts
		t.Fatal(err)
	}
	// Updates until the gathering is over (at least one: the done channel
	// is not looked at before it, so that it orders nothing).
	done := webrtc.GatheringCompletePromise(pc)
	for {
		if err := n.UpdateInterfaces(); err != nil {
			t.Fatal(err)
		}
		if ifs, err := n.Interfaces(); err != nil || len(ifs) == 0 {
			t.Fatalf("interfaces after an update: %d, %v", len(ifs), err)
		}
		select {
		case <-done:
			return
		default:
		}
	}
}
