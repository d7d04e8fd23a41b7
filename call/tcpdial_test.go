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
	done := webrtc.GatheringCompletePromise(pc)
	for updates := 0; ; updates++ {
		select {
		case <-done:
			if updates == 0 {
				t.Fatal("gathering completed before any update")
			}
			return
		default:
		}
		if err := n.UpdateInterfaces(); err != nil {
			t.Fatal(err)
		}
		if ifs, err := n.Interfaces(); err != nil || len(ifs) == 0 {
			t.Fatalf("interfaces after an update: %d, %v", len(ifs), err)
		}
	}
}
