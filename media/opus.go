package media

import "time"

// opusSampleRate is the rate Opus granule positions and RTP timestamps count
// in, whatever the input rate was (RFC 7845 section 4).
const opusSampleRate = 48000

// opusConfigSamples is the frame duration, in 48 kHz samples, of each of
// the 32 TOC configurations (RFC 6716 section 3.1, table 2).
var opusConfigSamples = [32]int{
	// SILK-only NB, MB, WB: 10, 20, 40, 60 ms
	480, 960, 1920, 2880, 480, 960, 1920, 2880, 480, 960, 1920, 2880,
	// Hybrid SWB, FB: 10, 20 ms
	480, 960, 480, 960,
	// CELT-only NB, WB, SWB, FB: 2.5, 5, 10, 20 ms
	120, 240, 480, 960, 120, 240, 480, 960, 120, 240, 480, 960, 120, 240, 480, 960,
}

// opusPacketSamples returns the number of 48 kHz samples an Opus packet
// decodes to, from its TOC byte and frame count (RFC 6716 section 3.1), or
// ok false when the packet is malformed (empty, code 3 without its count
// byte, zero frames, or more than the 120 ms a packet may hold).
func opusPacketSamples(p []byte) (samples int, ok bool) {
	if len(p) == 0 {
		return 0, false
	}
	per := opusConfigSamples[p[0]>>3]
	var frames int
	switch p[0] & 0x03 {
	case 0:
		frames = 1
	case 1, 2:
		frames = 2
	case 3:
		if len(p) < 2 {
			return 0, false
		}
		frames = int(p[1] & 0x3f)
	}
	samples = per * frames
	if frames == 0 || samples > 120*opusSampleRate/1000 {
		return 0, false
	}
	return samples, true
}

// opusStereo reports the TOC stereo flag of an Opus packet.
func opusStereo(p []byte) bool { return len(p) > 0 && p[0]&0x04 != 0 }

// samplesToDuration converts 48 kHz samples to a duration.
func samplesToDuration(samples int64) time.Duration {
	return time.Duration(samples) * time.Second / opusSampleRate
}
