package media_test

import (
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/duetcall/duet/media"
)

// Send the embedded video fixture at real-time pace, looping, and record
// what comes out. In a call, the frames go to a pion track's WriteSample
// (after encryption) and the sink gets what the sample builder assembles.
func Example() {
	ctx := context.Background()
	src, err := media.NewPacedSource(media.BytesOpener(media.VideoFixture()), media.PacedOptions{Loop: true})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	info := src.Info()
	fmt.Printf("%s %dx%d at %v fps\n", info.Codec, info.Width, info.Height, info.FPS)

	var rec bytes.Buffer
	sink := media.NewIVFSink(&rec)
	for range 3 {
		f, err := src.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		key, w, h, _ := media.VP8FrameInfo(f.Data)
		fmt.Println(key, w, h, f.Duration)
		if err := sink.WriteFrame(f); err != nil {
			log.Fatal(err)
		}
	}
	if err := sink.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(sink.Stats().Frames, "frames recorded")
	// Output:
	// video/VP8 1280x720 at 30 fps
	// true 1280 720 33.333333ms
	// false 0 0 33.333333ms
	// false 0 0 33.333333ms
	// 3 frames recorded
}
