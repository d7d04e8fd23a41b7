#!/usr/bin/env bash
# Regenerates the media fixtures that package media embeds (media/fixtures/):
#   video.ivf  3 s of 1280x720 30 fps VP8 (testsrc2) at about 1.5 Mbps,
#              a key frame every 30 frames (frame 0 included, so a looping
#              sender restarts on a key frame), no alt-ref/hidden frames
#              (each IVF frame is one shown frame, as WebRTC sends them).
#   audio.ogg  3 s of a 440 Hz mono Opus tone, 48 kHz, 20 ms packets.
# Needs ffmpeg with libvpx and libopus (Debian: apt-get install -y ffmpeg).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v ffmpeg >/dev/null || { echo "make-fixtures: ffmpeg missing: apt-get install -y ffmpeg" >&2; exit 1; }
out=media/fixtures
mkdir -p "$out"

ffmpeg -hide_banner -v error -y \
  -f lavfi -i testsrc2=size=1280x720:rate=30:duration=3 \
  -c:v libvpx -b:v 1500k -minrate 1500k -maxrate 1500k -bufsize 1500k \
  -g 30 -keyint_min 30 -auto-alt-ref 0 -lag-in-frames 0 \
  -deadline good -cpu-used 4 \
  -fflags +bitexact -flags:v +bitexact \
  -f ivf "$out/video.ivf"

ffmpeg -hide_banner -v error -y \
  -f lavfi -i sine=frequency=440:sample_rate=48000:duration=3 \
  -c:a libopus -b:a 32k -frame_duration 20 -application audio -ac 1 \
  -map_metadata -1 -fflags +bitexact -flags:a +bitexact \
  -f ogg "$out/audio.ogg"

ls -l "$out/video.ivf" "$out/audio.ogg"
