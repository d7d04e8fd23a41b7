// Package e2ee is duet's media frame cipher: end-to-end encryption of encoded
// audio and video frames between two call peers, as specified in
// docs/PROTOCOL.md §5 (and checked against testdata/vectors).
//
// Keys are per call, per epoch and per direction. [DeriveKeys] turns the two
// parties' ephemeral X25519 keys (exchanged in the signed call_offer,
// call_answer and call_rekey messages) into a send and a receive
// [DirectionKey]. An [Encryptor] owns the sending direction, a [Decryptor] the
// receiving one.
//
// An encrypted frame is
//
//	clear_header || counter (u64be) || AES-256-GCM ciphertext || tag (16 bytes)
//
// where the clear header is the codec payload header left readable for the
// depacketizer (10 bytes for a VP8 key frame, 3 for a VP8 delta frame, 1 for
// Opus, 0 otherwise; see [FrameKind]), counter = epoch<<32 | seq, the IV is
// the direction's base IV with bytes 0..7 XORed with u64le(counter), and the
// clear header and counter are authenticated as additional data. The overhead
// is [Overhead] bytes per frame.
//
// The receiver keeps a [ReplayWindow]-counter sliding window per key and
// accepts the previous epoch's key until [RekeyGrace] after the first frame
// under the new one authenticates. The sender counts frames and body bytes per key, signals once
// when 80 % of the key's budget is used ([RekeyFrames], [RekeyBytes]) and
// refuses to go past [MaxFramesPerKey] frames or [MaxBytesPerKey] bytes, so a
// (key, IV) pair is never reused.
//
// The constants are part of the protocol and shared with the browser SDK;
// they are deliberately not configurable.
package e2ee
