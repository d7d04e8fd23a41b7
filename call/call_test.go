package call

import (
	"testing"
	"time"
)

func TestAudioCall(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	connect(t, a, b, Media{Audio: true})

	for _, p := range []*peer{a, b} {
		st := p.waitStats(10*time.Second, "audio frames both ways", func(s Stats) bool {
			return s.AudioFramesReceived >= 50 && s.AudioFramesSent >= 50
		})
		if st.VideoFramesSent != 0 || st.VideoFramesReceived != 0 {
			t.Errorf("%s: video in an audio call: %+v", p.name, st)
		}
		if st.DecryptErrors != 0 {
			t.Errorf("%s: %d frames failed to decrypt", p.name, st.DecryptErrors)
		}
		if st.LocalCandidate == "" || st.BytesReceived == 0 || st.PacketsReceived == 0 {
			t.Errorf("%s: stats incomplete: %+v", p.name, st)
		}
		if lt := p.mod.LocalTracks().Get(); lt.Audio == nil || lt.Video != nil {
			t.Errorf("%s: local tracks %+v", p.name, lt)
		}
		if rt := p.mod.RemoteTracks().Get(); rt.Audio == nil || rt.Video != nil {
			t.Errorf("%s: remote tracks %+v", p.name, rt)
		}
	}

	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	if st := a.mod.State().Get(); st.State != StateHangup || st.Reason != ReasonUserHangup {
		t.Errorf("a after Hangup: %+v", st)
	}
	if st := b.waitState(StateHangup, 5*time.Second); st.Reason != ReasonUserHangup {
		t.Errorf("b: %+v, want hangup by user_hangup", st)
	}
	if err := a.mod.Hangup(); err == nil {
		t.Error("second Hangup: no error")
	}
}
