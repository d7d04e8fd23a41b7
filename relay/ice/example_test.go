package ice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/duetcall/duet/relay/ice"
)

// A relay with a coturn server configured by TURN_HOST and TURN_SECRET.
func Example() {
	r, err := ice.New(ice.Options{
		TURNHost:      "turn.example.com",
		TURNSecret:    "coturn static-auth-secret",
		CredentialTTL: 10 * time.Minute,
		Logger:        slog.New(slog.DiscardHandler),
		Now:           func() time.Time { return time.Unix(1800000000, 0) },
	})
	if err != nil {
		panic(err)
	}
	cfg, err := r.Get(context.Background(), "u12345678")
	if err != nil {
		panic(err)
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	fmt.Println(string(b))
	// Output:
	// {
	//   "ttl": 600,
	//   "ice_transport_policy": "all",
	//   "ice_servers": [
	//     {
	//       "urls": [
	//         "stun:turn.example.com:3478"
	//       ]
	//     },
	//     {
	//       "urls": [
	//         "turn:turn.example.com:3478?transport=udp",
	//         "turn:turn.example.com:3478?transport=tcp",
	//         "turns:turn.example.com:5349?transport=tcp"
	//       ],
	//       "username": "1800000600:u12345678",
	//       "credential": "2dYXn2yfxS8p7vCD2ik/azPzIF4="
	//     }
	//   ]
	// }
}
