package media

import "encoding/binary"

// VP8FrameInfo parses the uncompressed header of a VP8 frame (RFC 6386
// section 9.1). Every frame starts with a 3-byte frame tag whose lowest bit
// is 0 for a key frame; a key frame goes on with the start code 9d 01 2a and
// two little-endian 16-bit fields whose low 14 bits are the width and height
// (the top 2 bits are a scaling mode, ignored here).
//
// ok is false when frame is too short or a key frame lacks the start code or
// has a zero size. For a valid inter frame it returns keyframe false and
// zero width and height (inter frames do not carry the size).
func VP8FrameInfo(frame []byte) (keyframe bool, width, height int, ok bool) {
	if len(frame) < 3 {
		return false, 0, 0, false
	}
	if frame[0]&0x01 != 0 { // inter frame
		return false, 0, 0, true
	}
	if len(frame) < 10 || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return true, 0, 0, false
	}
	width = int(binary.LittleEndian.Uint16(frame[6:8]) & 0x3fff)
	height = int(binary.LittleEndian.Uint16(frame[8:10]) & 0x3fff)
	if width == 0 || height == 0 {
		return true, width, height, false
	}
	return true, width, height, true
}

// vp8Keyframe reports whether frame is a VP8 key frame by its frame tag.
func vp8Keyframe(frame []byte) bool {
	return len(frame) >= 3 && frame[0]&0x01 == 0
}
