// The call module's entry point (the seed's CallModule), kept for the
// imports of earlier versions: the module itself is split like the Go SDK's
// call package:
//
//   call-fsm.js      the call state machine (PROTOCOL §10; call/fsm)
//   call-module.js   CallModule, the machine's driver (module.go, signal.go)
//   call-config.js   the lifecycle constants and timings (options.go)
//   call-session.js  constants, the per-call record (session.go, types.go)
//   call-caller.js   the caller's offer, answer and ICE restart
//   call-callee.js   the callee's answer and ICE restart answer
//   call-pc.js       the peer connection, E2EE transforms, ICE, media (pc.go, media.go)
//   call-stats.js    the Diag sample (stats.go)
//   call-rekey.js    media rekey (rekey.go)

export {
  ANSWER_TIMEOUT_MS, DISCONNECTED_TIMEOUT_MS, MEDIA_TIMEOUT_MS, GUM_TIMEOUT_MS, DIAG_INTERVAL_MS, MAX_VIDEO_BITRATE,
  VIDEO_CONSTRAINTS, DEGRADATION_PREFERENCE, SCREEN_DEGRADATION_PREFERENCE, CALL_STATES, CALL_ENDINGS,
} from './call-session.js';
export { mLines, e2eeSupport, rtcConfiguration } from './call-pc.js';
export { CallModule } from './call-module.js';
