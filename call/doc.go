// Package call is duet's Go call module: end-to-end-encrypted 1:1 audio and
// video calls on pion/webrtc v4, with the semantics of the CallModule of the
// product description duet implements (the wire protocol, and where duet
// differs from that description, are in docs/PROTOCOL.md).
//
// A [Module] owns at most one call at a time. The application connects a
// relay client, creates a Module with the client as its [Signaler], and
// wires the client's envelope, undeliverable and relay-error callbacks to
// [Module.HandleEnvelope], [Module.HandleUndeliverable] and
// [Module.HandleRelayError]:
//
//	var mod *call.Module
//	c, err := client.Connect(ctx, client.Options{
//		RelayURL: url, Identity: id, Alias: alias,
//		OnEnvelope:      func(e *wire.Envelope) { mod.HandleEnvelope(e) },
//		OnUndeliverable: func(u client.Undeliverable) { mod.HandleUndeliverable(u) },
//		OnRelayError:    func(e client.RelayError) { mod.HandleRelayError(e) },
//	})
//	mod = call.New(call.Options{Signaler: c, OnIncomingCall: ring})
//	defer mod.Close()
//	err = mod.Call(ctx, "u12345678", call.Media{Audio: true, Video: true})
//
// The caller sends call_offer directly (there is no invite); the callee
// keeps the offer, goes to [StateRinging] and learns from the offer's SDP
// (an m=video line) whether it is a video call. [Module.Answer],
// [Module.Reject] and [Module.Hangup] act on the current call. The state is
// a hot value ([Module.State]): a subscriber gets the current [Status] at
// once and every later one, as do the local and remote track observables.
//
// Every signaling frame is sealed and opened with package wire (signed,
// encrypted with the session key of both parties' pinned long-term keys,
// replay-guarded); frames that fail are dropped and counted by reason
// ([Stats.SignalingDrops]). Media is VP8 and Opus only. Every outgoing frame
// is encrypted with package e2ee (keys from the per-call ephemeral X25519
// keys carried in the offer and answer) before it is handed to pion, and
// every incoming frame is decrypted once rebuilt from its RTP packets (a
// frame assembler with a window of 512 video or 32 audio packets that drops
// incomplete frames), so nothing unencrypted leaves a peer, neither to a
// TURN server nor to anything else on the path.
//
// The lifecycle follows the seed (with the differences docs/PROTOCOL.md §8
// lists, such as the callee's ring timeout and ICE restart wait), with the
// constants of docs/PROTOCOL.md §6, which are deliberately not configurable:
// the caller gives up after 15 s without an answer (sending call_hangup with
// reason no_answer first), a connection that stays disconnected for 8 s ends
// the call, so does 15 s without inbound RTP growth, and ICE failure
// triggers one ICE restart before the call ends with ice_failed.
package call
